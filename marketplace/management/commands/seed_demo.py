"""Seed the demo: four accounts, two published DP datasets and one HE dataset built from real data, then
(by seed_demo_model) a DP model of the breast-cancer table published for encrypted inference, and last
(by seed_demo_pate) a PATE ensemble of three owners' parts of that table, which labels demo-buyer's tumours.

The data are two tables that scikit-learn ships inside its package (no download): the Wisconsin
breast-cancer diagnostic table (569 tumours) and the diabetes progression table (442 patients).
They go through ``marketplace.services.dataset_create`` exactly like an owner's upload, so the real
upload checks run on them.

Every bound and category below was written down by a person from what the columns mean (units,
physiology, how the features are computed), never computed from the data with min/max: reading
bounds off the data would leak the extremes of the table into every noisy answer's scale.

The HE dataset is made the way an owner makes one: the owner CLI's ``encrypt_csv`` encrypts a copy
of the diabetes table in a scratch folder (deleted afterwards) with the secret key going to the demo
owner's keystore, ``var/owner-keys`` (standing in for the owner's own machine), and the bundle goes
through the same upload, check and publish services as ``cloakroom he publish``. The demo's key agent
(the ``keyagent`` process of the Procfile) holds that keystore and an API key of demo-owner, written
once to ``var/demo-owner-agent.key`` (mode 0600).

Running the command twice is safe: existing users keep their passwords and existing datasets (and the
model) are left as they are, so a second run creates nothing.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pandas as pd
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import CreditEntry, User
from accounts.selectors import wallet_balance
from accounts.services import api_key_create, user_signup, wallet_change, wallet_create
from cloakroom_client.he import encrypt_csv, write_policy
from cloakroom_client.protocol.bundle import manifest_files
from config.exceptions import ServiceError
from marketplace import selectors
from marketplace.he import services as he_services
from marketplace.management.demo import manage_command
from marketplace.models import Dataset
from marketplace.services import DatasetInput, dataset_create, dataset_publish

DEMO_OWNER = "demo-owner"
DEMO_BUYER = "demo-buyer"
# A second buyer, who bought budget of the breast-cancer table, trained the demo's model on it and sells
# predictions of it (compute/management/commands/seed_demo_model.py).
DEMO_MODELLER = "demo-modeller"
DEMO_ADMIN = "admin"
# The buyers start with at least this many credits, whatever CLOAKROOM_SIGNUP_CREDITS says.
DEMO_BUYER_CREDITS = Decimal("1000.00")
PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 20


def new_password() -> str:
    """A random password of letters and digits only, so it can be pasted into a shell unquoted."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def _numeric(name: str, lower: float, upper: float) -> dict:
    return {"name": name, "kind": "numeric", "lower": lower, "upper": upper}


# Breast cancer (Wisconsin diagnostic). Each feature describes the cell nuclei in a digitised image
# of a fine-needle aspirate; sizes are in image units. The ten "mean" features are all kept, plus the
# largest ("worst") radius and area. Shape features (smoothness, compactness, concavity, symmetry,
# fractal dimension) are ratios with a natural range well below 1.
BREAST_CANCER_COLUMNS: list[dict] = [
    _numeric("mean_radius", 0, 40),
    _numeric("mean_texture", 0, 50),
    _numeric("mean_perimeter", 0, 250),
    _numeric("mean_area", 0, 3000),
    _numeric("mean_smoothness", 0, 0.25),
    _numeric("mean_compactness", 0, 0.5),
    _numeric("mean_concavity", 0, 0.5),
    _numeric("mean_concave_points", 0, 0.25),
    _numeric("mean_symmetry", 0, 0.5),
    _numeric("mean_fractal_dimension", 0, 0.15),
    _numeric("worst_radius", 0, 50),
    # Deliberately tight: a few very large tumours exceed 2500 and are clipped to it (the dataset
    # asks for clipping). A smaller bound means less noise on every sum and mean of this column.
    _numeric("worst_area", 0, 2500),
    {"name": "diagnosis", "kind": "categorical", "categories": ["malignant", "benign"], "is_label": True},
]

# Diabetes (Efron et al., 2004), the raw unscaled version: ten baseline measurements and a
# quantitative measure of disease progression one year later. Units follow the original study.
DIABETES_COLUMNS: list[dict] = [
    _numeric("age", 18, 100),  # years; the study enrolled adults
    # Coded 1 or 2 in the raw table; kept as the codes the study used.
    {"name": "sex", "kind": "categorical", "categories": ["1", "2"]},
    _numeric("bmi", 10, 60),  # body-mass index, kg/m^2
    _numeric("bp", 40, 180),  # average blood pressure, mmHg
    _numeric("tc", 50, 400),  # total serum cholesterol, mg/dL
    _numeric("ldl", 0, 300),  # low-density lipoproteins, mg/dL
    _numeric("hdl", 10, 150),  # high-density lipoproteins, mg/dL
    _numeric("tch", 1, 15),  # total cholesterol / HDL ratio
    _numeric("ltg", 2, 8),  # natural log of serum triglycerides (mg/dL)
    _numeric("glu", 40, 250),  # blood sugar, mg/dL
    {**_numeric("progression", 0, 400), "is_label": True},  # disease progression after one year
]


def breast_cancer_frame() -> pd.DataFrame:
    """The breast-cancer table with snake_case column names and the diagnosis spelled out."""
    from sklearn.datasets import load_breast_cancer  # lazy: scikit-learn is heavy and only the seed needs it

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.rename(columns=lambda c: c.replace(" ", "_"))
    # scikit-learn codes the target 0 = malignant, 1 = benign (its target_names, in that order).
    frame["diagnosis"] = frame.pop("target").map(dict(enumerate(bunch.target_names)))
    return frame[[c["name"] for c in BREAST_CANCER_COLUMNS]]


def diabetes_frame() -> pd.DataFrame:
    """The raw diabetes table with the study's names for the six blood serum measurements."""
    from sklearn.datasets import load_diabetes  # lazy, as above

    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame = frame.rename(
        columns={"s1": "tc", "s2": "ldl", "s3": "hdl", "s4": "tch", "s5": "ltg", "s6": "glu", "target": "progression"}
    )
    # The raw file stores the code as a float (1.0, 2.0); the declared categories are "1" and "2".
    frame["sex"] = frame["sex"].astype(int).astype(str)
    return frame[[c["name"] for c in DIABETES_COLUMNS]]


@dataclass(frozen=True)
class DemoDataset:
    title: str
    description: str
    filename: str
    frame: Callable[[], pd.DataFrame]
    columns: list[dict]
    epsilon_cap: Decimal
    delta_cap: Decimal
    price_per_epsilon: Decimal
    clip_to_bounds: bool


DEMO_DATASETS: tuple[DemoDataset, ...] = (
    DemoDataset(
        title="Breast cancer diagnostic (Wisconsin)",
        description=(
            "Features of cell nuclei computed from digitised images of fine-needle aspirates of breast "
            "masses, with the diagnosis (malignant or benign). 569 tumours; 12 of the 30 features. "
            "Source: UCI, as shipped with scikit-learn. 'worst_area' is clipped to 2500."
        ),
        filename="breast_cancer.csv",
        frame=breast_cancer_frame,
        columns=BREAST_CANCER_COLUMNS,
        epsilon_cap=Decimal("10"),
        delta_cap=Decimal("0.00001"),
        price_per_epsilon=Decimal("20.00"),
        clip_to_bounds=True,
    ),
    DemoDataset(
        title="Diabetes progression",
        description=(
            "Age, sex, body-mass index, blood pressure and six blood serum measurements of 442 diabetes "
            "patients, with a measure of disease progression one year after baseline. "
            "Source: Efron et al. (2004), as shipped with scikit-learn."
        ),
        filename="diabetes.csv",
        frame=diabetes_frame,
        columns=DIABETES_COLUMNS,
        epsilon_cap=Decimal("10"),
        delta_cap=Decimal("0.00001"),
        price_per_epsilon=Decimal("15.00"),
        clip_to_bounds=False,
    ),
)


def csv_upload(frame: pd.DataFrame, filename: str) -> SimpleUploadedFile:
    """The frame as a CSV file upload, built in memory: nothing is written to disk in the clear."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return SimpleUploadedFile(filename, buffer.getvalue().encode("utf-8"), content_type="text/csv")


HE_DEMO_TITLE = "Diabetes progression (encrypted on the owner's machine)"
HE_DEMO_COLUMNS: list[dict] = [c for c in DIABETES_COLUMNS if c["name"] in ("age", "sex", "bmi", "bp", "progression")]
HE_DEMO_DESCRIPTION = (
    "Five columns of the diabetes table, encrypted with CKKS by the owner before upload: the platform holds "
    "ciphertexts and a public context only. Sums, means, variances, counts by sex, dot products and "
    "regression statistics run under encryption; the owner's key agent decrypts each aggregate and adds "
    "the noise before release."
)
KEYSTORE_DIR_NAME = "owner-keys"
AGENT_KEY_FILE_NAME = "demo-owner-agent.key"


class Command(BaseCommand):
    help = (
        "Create the demo accounts (demo-owner, demo-buyer, demo-modeller, admin), two published DP datasets, one HE "
        "dataset, a DP model published for encrypted inference and a PATE ensemble. Safe to re-run."
    )

    def handle(self, *args, **options) -> None:
        created_passwords: list[tuple[str, str, str]] = []
        existing: list[str] = []

        owner, password = self._user(DEMO_OWNER, roles=["owner"])
        self._note(owner, password, "data owner", created_passwords, existing)
        buyer, password = self._user(DEMO_BUYER, roles=["buyer"])
        if password is not None:
            self._top_up(buyer)
        self._note(buyer, password, "buyer", created_passwords, existing)
        modeller, password = self._user(DEMO_MODELLER, roles=["buyer"])
        if password is not None:
            self._top_up(modeller)
        self._note(modeller, password, "buyer, sells a model", created_passwords, existing)
        admin, password = self._admin()
        self._note(admin, password, "administrator (/admin/)", created_passwords, existing)

        datasets = [self._dataset(owner, spec) for spec in DEMO_DATASETS]
        datasets.append(self._he_dataset(owner))
        self._agent_key(owner)
        self._summary(created_passwords, existing, datasets, buyer)
        # The demo's model and its listing are compute's (which marketplace cannot import): by name.
        call_command("seed_demo_model", stdout=self.stdout, stderr=self.stderr)
        call_command("seed_demo_pate", stdout=self.stdout, stderr=self.stderr)

    # Accounts -------------------------------------------------------------------------------

    def _user(self, username: str, *, roles: list[str]) -> tuple[User, str | None]:
        """Return the user and its new password, or the existing user and None (password untouched)."""
        user = User.objects.filter(username=username).first()
        if user is not None:
            return user, None
        password = new_password()
        try:
            user = user_signup(username=username, email=f"{username}@example.org", password=password, roles=roles)
        except ServiceError as exc:
            raise CommandError(f"Could not create {username}: {exc}") from None
        return user, password

    def _admin(self) -> tuple[User, str | None]:
        user = User.objects.filter(username=DEMO_ADMIN).first()
        if user is not None:
            return user, None
        password = new_password()
        with transaction.atomic():
            user = User.objects.create_superuser(username=DEMO_ADMIN, email="admin@example.org", password=password)
            wallet_create(user=user)
        return user, password

    def _top_up(self, buyer: User) -> None:
        """Give a newly created buyer enough credits to try the tour, through the credit ledger."""
        missing = DEMO_BUYER_CREDITS - wallet_balance(user=buyer)
        if missing > 0:
            wallet_change(user=buyer, amount=missing, kind=CreditEntry.Kind.ADJUSTMENT, memo="demo credits")

    @staticmethod
    def _note(user: User, password: str | None, role: str, created: list, existing: list) -> None:
        if password is None:
            existing.append(user.username)
        else:
            created.append((user.username, role, password))

    # Datasets -------------------------------------------------------------------------------

    def _dataset(self, owner: User, spec: DemoDataset) -> Dataset:
        dataset = selectors.dataset_list(user=owner, mine=True).filter(title=spec.title).first()
        if dataset is None:
            data = DatasetInput(
                title=spec.title,
                description=spec.description,
                mode=Dataset.Mode.DP,
                epsilon_cap=spec.epsilon_cap,
                delta_cap=spec.delta_cap,
                price_per_epsilon=spec.price_per_epsilon,
                row_count_public=True,
                clip_to_bounds=spec.clip_to_bounds,
                columns=spec.columns,
            )
            try:
                dataset = dataset_create(owner=owner, data=data, upload=csv_upload(spec.frame(), spec.filename))
            except ServiceError as exc:
                raise CommandError(f"The demo dataset {spec.title!r} was rejected: {exc}") from None
            clipped = getattr(dataset, "ingest_report", {}).get("clipped") or {}
            note = f" (clipped to the declared bounds: {clipped})" if clipped else ""
            self.stdout.write(f"Uploaded {spec.title!r}: {dataset.row_count} rows{note}.")
        if dataset.status == Dataset.Status.DRAFT:
            dataset = dataset_publish(owner=owner, dataset_id=dataset.pk)
        return dataset

    def _he_dataset(self, owner: User) -> Dataset:
        """Encrypt, upload, check and publish the HE demo dataset, unless it is there already."""
        dataset = Dataset.objects.filter(owner=owner, title=HE_DEMO_TITLE, mode=Dataset.Mode.HE).first()
        if dataset is not None and dataset.bundle_status != Dataset.BundleStatus.READY:
            raise CommandError(
                f"The HE demo dataset #{dataset.pk} is {dataset.bundle_status}; run `make clean` and seed again."
            )
        if dataset is None:
            var = Path(settings.VAR_DIR)
            scratch = Path(tempfile.mkdtemp(prefix="he-demo-", dir=var))
            try:
                frame = diabetes_frame()[[c["name"] for c in HE_DEMO_COLUMNS]]
                frame.to_csv(scratch / "diabetes.csv", index=False)
                manifest = encrypt_csv(
                    scratch / "diabetes.csv",
                    HE_DEMO_COLUMNS,
                    scratch / "bundle",
                    job_classes=("sum", "product"),
                    keystore=var / KEYSTORE_DIR_NAME,
                    progress=False,
                )
                data = he_services.HeDatasetInput(
                    title=HE_DEMO_TITLE,
                    description=HE_DEMO_DESCRIPTION,
                    epsilon_cap=Decimal("10"),
                    delta_cap=Decimal("0"),
                    price_per_epsilon=Decimal("10.00"),
                    row_count_public=True,
                )
                dataset, _ = he_services.he_dataset_create(owner=owner, data=data, manifest=manifest)
                # What `cloakroom he publish` records on the owner's machine: the cap the key agent enforces.
                write_policy(manifest["bundle_id"], data.epsilon_cap, var / KEYSTORE_DIR_NAME)
                for entry in manifest_files(manifest):
                    with open(scratch / "bundle" / entry["file"], "rb") as stream:
                        he_services.bundle_file_upload(
                            owner=owner,
                            dataset_id=dataset.pk,
                            name=entry["file"],
                            stream=stream,
                            content_length=entry["bytes"],
                        )
                dataset = he_services.bundle_complete(owner=owner, dataset_id=dataset.pk)
            except ServiceError as exc:
                raise CommandError(f"The HE demo dataset was rejected: {exc}") from None
            finally:
                shutil.rmtree(scratch, ignore_errors=True)  # the plaintext copy and the bundle
            self.stdout.write(f"Encrypted and uploaded {HE_DEMO_TITLE!r}: {dataset.row_count} rows.")
        if dataset.status == Dataset.Status.DRAFT:
            dataset = dataset_publish(owner=owner, dataset_id=dataset.pk)
        return dataset

    def _agent_key(self, owner: User) -> None:
        """An API key for the demo key agent, written once to var/demo-owner-agent.key (0600)."""
        path = Path(settings.VAR_DIR) / AGENT_KEY_FILE_NAME
        if path.exists():
            return
        _, key = api_key_create(user=owner, name="demo key agent")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        self.stdout.write(f"Wrote the demo key agent's API key (demo-owner) to {path}.")

    # Output ---------------------------------------------------------------------------------

    def _summary(self, created: list, existing: list, datasets: list[Dataset], buyer: User) -> None:
        out = self.stdout
        out.write("")
        if created:
            out.write(
                self.style.SUCCESS("Demo accounts created. Passwords are shown ONCE here and stored nowhere else:")
            )
            for username, role, password in created:
                out.write(f"  {username:<13} {role:<24} password: {password}")
        if existing:
            # A command that works as printed: with the demo's settings file when there is one.
            account = DEMO_BUYER if DEMO_BUYER in existing else existing[0]
            out.write(f"Already there, passwords unchanged: {', '.join(existing)}. To set a new one for {account}:")
            out.write(f"  {manage_command('changepassword', account)}")
        out.write(f"  demo-buyer's wallet: {wallet_balance(user=buyer)} credits")
        out.write("")
        out.write("Demo datasets:")
        for dataset in datasets:
            out.write(
                f"  #{dataset.pk:<3} {dataset.title:<40} {dataset.status:<10} rows {dataset.row_count:<5} "
                f"epsilon cap {dataset.epsilon_cap.normalize():f}, {dataset.price_per_epsilon} credits per epsilon"
            )
