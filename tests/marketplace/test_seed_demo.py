"""The demo's two commands: demo_init writes var/demo.env once, seed_demo fills the marketplace.

seed_demo runs for real here: scikit-learn's bundled tables go through dataset_create, the upload
checks and the encryption at rest, into the test database.
"""

from __future__ import annotations

import io
import re
import stat
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from accounts.models import ApiKey, CreditEntry, User
from accounts.selectors import wallet_balance
from accounts.services import api_key_create
from compute.management.commands.seed_demo_pate import BUYER as PATE_BUYER
from compute.management.commands.seed_demo_pate import OWNERS as PATE_OWNERS
from marketplace import storage
from marketplace.management.commands.seed_demo import (
    DEMO_DATASETS,
    breast_cancer_frame,
    diabetes_frame,
)
from marketplace.models import Column, Dataset, Purchase
from marketplace.services import purchase_create

pytestmark = pytest.mark.django_db

PASSWORD_LINE = re.compile(r"^\s*(\S+)\s+.*password: (\S+)\s*$", re.MULTILINE)


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def stored_frame(dataset: Dataset) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(storage.read_decrypted(dataset.file_path)))


def snapshot() -> dict:
    return {
        "users": sorted(User.objects.values_list("username", "password")),
        "datasets": sorted(Dataset.objects.values_list("id", "status", "file_path")),
        "columns": Column.objects.count(),
        "credit_entries": CreditEntry.objects.count(),
        "purchases": Purchase.objects.count(),
    }


# seed_demo ------------------------------------------------------------------------------------


def test_seed_demo_creates_an_owner_two_buyers_with_credits_and_a_superuser():
    seed()
    owner = User.objects.get(username="demo-owner")
    buyer = User.objects.get(username="demo-buyer")
    modeller = User.objects.get(username="demo-modeller")
    admin = User.objects.get(username="admin")
    assert (owner.is_owner, owner.is_buyer) == (True, False)
    assert (buyer.is_owner, buyer.is_buyer) == (False, True)
    assert (modeller.is_owner, modeller.is_buyer) == (False, True)
    assert admin.is_superuser and admin.is_staff
    assert wallet_balance(user=buyer) >= Decimal("1000.00")
    # The modeller's 1000, less the epsilon it bought for the demo's model (tests/compute/test_seed_demo_model.py).
    assert wallet_balance(user=modeller) == Decimal("1000.00") - Purchase.objects.get(buyer=modeller).price


def test_seed_demo_prints_a_working_password_for_each_new_account():
    output = seed()
    passwords = dict(PASSWORD_LINE.findall(output))
    # With the PATE ensemble's three clinics and its buyer (compute/management/commands/seed_demo_pate.py).
    assert set(passwords) == {"demo-owner", "demo-buyer", "demo-modeller", "admin", *PATE_OWNERS, PATE_BUYER}
    for username, password in passwords.items():
        assert User.objects.get(username=username).check_password(password), username
    assert len(set(passwords.values())) == 8


def test_seed_demo_publishes_both_datasets_with_the_row_counts_of_the_sklearn_tables():
    seed()
    owner = User.objects.get(username="demo-owner")
    datasets = {d.title: d for d in Dataset.objects.filter(owner=owner, mode="dp")}
    assert set(datasets) == {spec.title for spec in DEMO_DATASETS}
    cancer = datasets["Breast cancer diagnostic (Wisconsin)"]
    diabetes = datasets["Diabetes progression"]
    assert (cancer.row_count, diabetes.row_count) == (569, 442)
    assert {d.status for d in datasets.values()} == {Dataset.Status.PUBLISHED}
    assert len(stored_frame(cancer)) == 569
    assert len(stored_frame(diabetes)) == 442


def test_seed_demo_stores_the_demo_files_encrypted(private_storage):
    seed()
    # The DP files; the HE bundle (under he/) is CKKS ciphertexts and is checked on its own below.
    files = [
        p for p in Path(private_storage).rglob("*") if p.is_file() and p.relative_to(private_storage).parts[0] != "he"
    ]
    # The two tables and the PATE ensemble's three clinics; the PATE buyer's unlabelled table is deleted
    # once its job is released.
    assert len(files) == 5
    assert not [p for p in files if p.relative_to(private_storage).parts[0] == "pate-inputs"]
    for path in files:
        raw = path.read_bytes()
        # A Fernet token is url-safe base64 that starts with its version byte, 0x80 ("gAAAAA").
        assert raw.startswith(b"gAAAAA")
        assert b"malignant" not in raw and b"mean_radius" not in raw
        assert storage.read_decrypted(str(path.relative_to(private_storage)))[:4] == b"PAR1"


def test_seed_demo_declares_the_diagnosis_and_sex_as_categorical_with_their_categories():
    seed()
    diagnosis = Column.objects.get(dataset__title__startswith="Breast cancer", name="diagnosis")
    sex = Column.objects.get(dataset__title="Diabetes progression", name="sex")
    assert (diagnosis.kind, diagnosis.categories, diagnosis.is_label) == ("categorical", ["malignant", "benign"], True)
    assert (sex.kind, sex.categories) == ("categorical", ["1", "2"])
    counts = stored_frame(diagnosis.dataset)["diagnosis"].value_counts().to_dict()
    # scikit-learn's table has 212 malignant and 357 benign tumours.
    assert counts == {"benign": 357, "malignant": 212}


def test_seed_demo_clips_worst_area_to_its_deliberately_tight_bound():
    seed()
    dataset = Dataset.objects.get(title__startswith="Breast cancer")
    column = dataset.columns.get(name="worst_area")
    assert dataset.clip_to_bounds is True
    assert column.upper == 2500
    assert breast_cancer_frame()["worst_area"].max() > 2500
    assert stored_frame(dataset)["worst_area"].max() == 2500


def test_running_seed_demo_twice_creates_nothing_new_and_keeps_the_passwords():
    seed()
    before = snapshot()
    output = seed()
    assert snapshot() == before
    assert "password:" not in output
    assert "Already there, passwords unchanged: demo-owner, demo-buyer, demo-modeller, admin" in output


def test_seed_demo_publishes_a_dataset_left_in_draft_by_an_interrupted_run():
    seed()
    dataset = Dataset.objects.get(title="Diabetes progression")
    Dataset.objects.filter(pk=dataset.pk).update(status=Dataset.Status.DRAFT, published_at=None)
    seed()
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.PUBLISHED
    assert Dataset.objects.filter(title="Diabetes progression").count() == 1


def test_the_seeded_buyer_can_buy_budget_on_a_demo_dataset():
    seed()
    buyer = User.objects.get(username="demo-buyer")
    dataset = Dataset.objects.get(title="Diabetes progression")
    purchase = purchase_create(buyer=buyer, dataset_id=dataset.pk, epsilon=Decimal("1"))
    assert purchase.price == Decimal("15.00")
    assert wallet_balance(user=buyer) == Decimal("985.00")


def test_seed_demo_leaves_existing_api_keys_and_purchases_alone():
    seed()
    buyer = User.objects.get(username="demo-buyer")
    api_key_create(user=buyer, name="tour")
    purchase_create(buyer=buyer, dataset_id=Dataset.objects.get(title="Diabetes progression").pk, epsilon=Decimal("2"))
    balance = wallet_balance(user=buyer)
    seed()
    assert ApiKey.objects.filter(user=buyer).count() == 1
    assert Purchase.objects.filter(buyer=buyer).count() == 1
    assert wallet_balance(user=buyer) == balance


# The declared schemas -------------------------------------------------------------------------


def _numeric_columns():
    frames = {DEMO_DATASETS[0].title: breast_cancer_frame(), DEMO_DATASETS[1].title: diabetes_frame()}
    for spec in DEMO_DATASETS:
        for column in spec.columns:
            if column["kind"] == "numeric":
                yield spec.title, column, frames[spec.title][column["name"]]


def test_declared_upper_bounds_are_never_the_data_maximum():
    for title, column, values in _numeric_columns():
        assert column["upper"] != values.max(), (title, column["name"])
        assert (column["lower"], column["upper"]) != (values.min(), values.max()), (title, column["name"])


def test_declared_bounds_are_round_numbers_a_person_chose():
    # Extremes read off the data look like 28.11 or 0.09744; the declared bounds have at most two
    # significant digits, as a person writing them down from domain knowledge would choose.
    for title, column, _ in _numeric_columns():
        for side in ("lower", "upper"):
            value = column[side]
            assert value == float(f"{value:.2g}"), (title, column["name"], side, value)


def test_declared_bounds_hold_the_data_except_the_one_bound_chosen_tight_for_clipping():
    outside = [
        (title, column["name"])
        for title, column, values in _numeric_columns()
        if not values.between(column["lower"], column["upper"]).all()
    ]
    assert outside == [("Breast cancer diagnostic (Wisconsin)", "worst_area")]
    assert next(s for s in DEMO_DATASETS if s.title == outside[0][0]).clip_to_bounds is True


# demo_init ------------------------------------------------------------------------------------


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_demo_init_writes_a_private_env_file_with_fresh_secrets(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    call_command("demo_init", stdout=io.StringIO())
    path = tmp_path / "var" / "demo.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = _read_env(path)
    assert set(values) == {
        "SECRET_KEY",
        "CLOAKROOM_DATA_KEYS",
        "DEBUG",
        "ALLOWED_HOSTS",
        "CLOAKROOM_SIGNUP_CREDITS",
        "CLOAKROOM_KEK_PRIVATE_KEY",
        "CLOAKROOM_KEK_PUBLIC_KEY",
    }
    from cloakroom_client.protocol.escrow import public_from_private

    assert public_from_private(values["CLOAKROOM_KEK_PRIVATE_KEY"]) == values["CLOAKROOM_KEK_PUBLIC_KEY"]
    assert values["DEBUG"] == "false"
    assert values["ALLOWED_HOSTS"] == "localhost,127.0.0.1"
    assert values["CLOAKROOM_SIGNUP_CREDITS"] == "1000"
    assert len(values["SECRET_KEY"]) >= 50
    token = Fernet(values["CLOAKROOM_DATA_KEYS"].encode()).encrypt(b"x")
    assert Fernet(values["CLOAKROOM_DATA_KEYS"].encode()).decrypt(token) == b"x"


def test_demo_init_never_overwrites_an_existing_env_file(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("demo_init", stdout=io.StringIO())
    first = (tmp_path / "demo.env").read_text()
    out = io.StringIO()
    call_command("demo_init", stdout=out)
    assert (tmp_path / "demo.env").read_text() == first
    assert "already exists" in out.getvalue()


def test_two_demo_init_runs_make_different_secrets(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "a"
    call_command("demo_init", stdout=io.StringIO())
    settings.VAR_DIR = tmp_path / "b"
    call_command("demo_init", stdout=io.StringIO())
    a, b = _read_env(tmp_path / "a" / "demo.env"), _read_env(tmp_path / "b" / "demo.env")
    assert a["SECRET_KEY"] != b["SECRET_KEY"]
    assert a["CLOAKROOM_DATA_KEYS"] != b["CLOAKROOM_DATA_KEYS"]


def test_seed_demo_publishes_an_he_dataset_encrypted_with_the_owner_cli(private_storage, var_dir):
    from marketplace.management.commands.seed_demo import AGENT_KEY_FILE_NAME, HE_DEMO_TITLE, KEYSTORE_DIR_NAME

    seed()
    dataset = Dataset.objects.get(title=HE_DEMO_TITLE)
    assert dataset.mode == "he" and dataset.status == "published" and dataset.bundle_status == "ready"
    assert dataset.row_count == 442 and dataset.bundle_manifest["job_classes"] == ["sum", "product"]
    assert [c.name for c in dataset.columns.all()] == ["age", "sex=1", "sex=2", "bmi", "bp", "progression"]
    # The secret key is in the owner's keystore, 0600; the platform's storage holds only the bundle.
    key_file = var_dir / KEYSTORE_DIR_NAME / f"{dataset.bundle_id}.secret"
    assert key_file.is_file() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    stored = sorted(p.name for p in (private_storage / "he" / str(dataset.pk)).iterdir())
    assert stored == sorted(["manifest.json", "context.bin", *(f"c{i:03d}.0000.ct" for i in range(6))])
    # No plaintext copy of the table is left behind.
    assert not list(var_dir.glob("he-demo-*")) and not list(var_dir.rglob("*.csv"))
    agent_key = (var_dir / AGENT_KEY_FILE_NAME).read_text().strip()
    assert stat.S_IMODE((var_dir / AGENT_KEY_FILE_NAME).stat().st_mode) == 0o600
    assert ApiKey.objects.get(prefix=agent_key.split("_")[1]).user.username == "demo-owner"
    # A second run reuses both.
    seed()
    assert Dataset.objects.filter(title=HE_DEMO_TITLE).count() == 1
    assert (var_dir / AGENT_KEY_FILE_NAME).read_text().strip() == agent_key
