"""The owner's side of HE mode: `cloakroom he encrypt` turns a CSV into a bundle (format v1) and keeps
the secret key in the local keystore. No database is needed."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tenseal as ts

from cloakroom_client import he
from cloakroom_client.cli import main as cli_main
from cloakroom_client.protocol import ckks

ROWS = 5000
SCHEMA = [
    {"name": "age", "kind": "numeric", "lower": 0, "upper": 120},
    {"name": "ward", "kind": "categorical", "categories": ["A", "B", "C"]},
    {"name": "insured", "kind": "boolean"},
]


def write_csv(path: Path, rows: int = ROWS, seed: int = 7) -> pd.DataFrame:
    """A CSV with a numeric column (some values beyond the declared bounds, to be clipped), a
    categorical column, a boolean column written as words, and an undeclared column."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": np.round(rng.uniform(-10, 130, rows), 1),
            "ward": rng.choice(["A", "B", "C"], rows, p=[0.5, 0.3, 0.2]),
            "insured": rng.choice(["yes", "no"], rows),
            "secret_note": [f"note {i}" for i in range(rows)],
        }
    )
    frame.to_csv(path, index=False)
    return frame


@pytest.fixture(scope="module")
def sums_encrypted(tmp_path_factory):
    root = tmp_path_factory.mktemp("sum")
    frame = write_csv(root / "data.csv")
    manifest = he.encrypt_csv(root / "data.csv", SCHEMA, root / "bundle", keystore=root / "keys", progress=False)
    return root, frame, manifest


@pytest.fixture(scope="module")
def products_encrypted(tmp_path_factory):
    root = tmp_path_factory.mktemp("product")
    frame = write_csv(root / "data.csv", seed=8)
    manifest = he.encrypt_csv(
        root / "data.csv",
        SCHEMA,
        root / "bundle",
        job_classes=("sum", "product"),
        keystore=root / "keys",
        progress=False,
    )
    return root, frame, manifest


def test_the_manifest_follows_the_bundle_format(sums_encrypted):
    root, _, manifest = sums_encrypted
    on_disk = json.loads((root / "bundle" / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["format"] == "cloakroom-he-bundle" and manifest["version"] == 1
    assert re.fullmatch(r"[0-9a-f]{32}", manifest["bundle_id"])
    assert manifest["scheme"] == "ckks"
    assert manifest["poly_modulus_degree"] == 4096
    assert manifest["coeff_mod_bit_sizes"] == [40, 20, 40]
    assert manifest["global_scale_bits"] == 20
    assert manifest["job_classes"] == ["sum"]
    assert manifest["slots"] == 2048 and manifest["rows"] == ROWS
    assert manifest["context"]["file"] == "context.bin"
    described = [{k: v for k, v in c.items() if k != "files"} for c in manifest["columns"]]
    assert described == [
        {"name": "age", "source": "age", "kind": "numeric", "lower": 0, "upper": 120},
        {"name": "ward=A", "source": "ward", "kind": "indicator", "category": "A", "lower": 0, "upper": 1},
        {"name": "ward=B", "source": "ward", "kind": "indicator", "category": "B", "lower": 0, "upper": 1},
        {"name": "ward=C", "source": "ward", "kind": "indicator", "category": "C", "lower": 0, "upper": 1},
        {"name": "insured", "source": "insured", "kind": "boolean", "lower": 0, "upper": 1},
    ]


def test_every_column_has_ceil_rows_over_slots_files_named_by_column_and_chunk(sums_encrypted):
    _, _, manifest = sums_encrypted
    chunks = math.ceil(ROWS / 2048)
    assert chunks == 3
    for index, column in enumerate(manifest["columns"]):
        assert [f["file"] for f in column["files"]] == [f"c{index:03d}.{k:04d}.ct" for k in range(chunks)]


def test_the_bundle_holds_exactly_the_listed_files_with_their_sizes_and_hashes(sums_encrypted):
    root, _, manifest = sums_encrypted
    listed = [manifest["context"]] + [f for c in manifest["columns"] for f in c["files"]]
    for entry in listed:
        data = (root / "bundle" / entry["file"]).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert sorted(os.listdir(root / "bundle")) == sorted([e["file"] for e in listed] + ["manifest.json"])


def test_each_ciphertext_packs_all_the_slots(sums_encrypted):
    root, _, manifest = sums_encrypted
    public = ts.context_from((root / "bundle" / "context.bin").read_bytes())
    for entry in manifest["columns"][0]["files"]:
        vector = ts.ckks_vector_from(public, (root / "bundle" / entry["file"]).read_bytes())
        assert vector.size() == 2048


def test_the_sum_context_is_public_with_no_galois_and_no_relinearisation_keys(sums_encrypted):
    root, _, _ = sums_encrypted
    data = (root / "bundle" / "context.bin").read_bytes()
    public = ts.context_from(data)
    assert not public.is_private()
    assert not public.has_secret_key()
    assert not public.has_galois_keys()
    assert not public.has_relin_keys()
    assert public.has_public_key()
    assert len(data) < 200_000


def test_the_product_context_is_public_with_relinearisation_keys_and_under_two_megabytes(products_encrypted):
    root, _, manifest = products_encrypted
    data = (root / "bundle" / "context.bin").read_bytes()
    public = ts.context_from(data)
    assert manifest["poly_modulus_degree"] == 8192 and manifest["coeff_mod_bit_sizes"] == [60, 40, 40, 60]
    assert manifest["job_classes"] == ["sum", "product"] and manifest["slots"] == 4096
    assert not public.is_private()
    assert not public.has_galois_keys()
    assert public.has_relin_keys()
    assert len(data) < 2_000_000


def test_sum_bundles_take_at_most_41_bytes_per_value(sums_encrypted):
    _, _, manifest = sums_encrypted
    assert he.bundle_stats(manifest)["bytes_per_slot"] <= 41


def test_product_bundles_take_at_most_82_bytes_per_value(products_encrypted):
    _, _, manifest = products_encrypted
    assert he.bundle_stats(manifest)["bytes_per_slot"] <= 82


def test_the_keystore_file_is_0600_in_a_0700_folder_and_holds_the_private_context(sums_encrypted):
    root, _, manifest = sums_encrypted
    path = root / "keys" / f"{manifest['bundle_id']}.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "keys").stat().st_mode) == 0o700
    secret = he.load_secret_context(manifest["bundle_id"], keystore=root / "keys")
    assert secret.is_private() and secret.has_secret_key()


def _secret_key_bytes(ctx: ts.Context, tmp_path: Path) -> bytes:
    target = tmp_path / "sk.bin"
    ctx.secret_key().data.save(str(target))
    return target.read_bytes()


@pytest.mark.parametrize("fixture", ["sums_encrypted", "products_encrypted"])
def test_the_secret_key_bytes_are_nowhere_in_the_bundle(fixture, request, tmp_path):
    root, _, manifest = request.getfixturevalue(fixture)
    secret = he.load_secret_context(manifest["bundle_id"], keystore=root / "keys")
    key = _secret_key_bytes(secret, tmp_path)
    windows = [key[i : i + 48] for i in range(64, len(key) - 48, max(1, (len(key) - 112) // 16))]
    keystore_file = (root / "keys" / f"{manifest['bundle_id']}.secret").read_bytes()
    # The probe is real: every window is found where the key is stored...
    assert all(w in keystore_file for w in windows)
    # ...and in no file of the bundle.
    for name in os.listdir(root / "bundle"):
        data = (root / "bundle" / name).read_bytes()
        assert not any(w in data for w in windows), name


def test_decrypting_the_bundle_gives_back_the_clipped_columns_and_zero_padding(sums_encrypted):
    root, frame, manifest = sums_encrypted
    secret = he.load_secret_context(manifest["bundle_id"], keystore=root / "keys")
    expected = {
        "age": frame["age"].clip(0, 120).to_numpy(),
        "ward=A": (frame["ward"] == "A").to_numpy(float),
        "ward=B": (frame["ward"] == "B").to_numpy(float),
        "ward=C": (frame["ward"] == "C").to_numpy(float),
        "insured": (frame["insured"] == "yes").to_numpy(float),
    }
    for column in manifest["columns"]:
        values = np.concatenate(
            [ckks.decrypt_vector(secret, (root / "bundle" / f["file"]).read_bytes()) for f in column["files"]]
        )
        assert np.abs(values[:ROWS] - expected[column["name"]]).max() < 0.02
        assert np.abs(values[ROWS:]).max() < 0.02  # the zero-padded tail


def test_an_undeclared_category_is_refused_naming_the_column_and_its_first_rows(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("age,ward,insured\n30,A,yes\n40,Z,no\n50,B,no\n60,Q,yes\n")
    with pytest.raises(he.SchemaMismatch) as info:
        he.encrypt_csv(csv, SCHEMA, tmp_path / "bundle", keystore=tmp_path / "keys", progress=False)
    assert info.value.problems == [
        "column 'ward': 2 values are not among the declared categories (rows 2, 4; first: 'Z')"
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("age,insured\n30,yes\n", "declared column 'ward' not found in the file"),
        ("age,ward,insured\n30,A,yes\nthirty,B,no\n", "column 'age': 1 value is not a finite number"),
        ("age,ward,insured\n30,A,yes\n40,,no\n", "column 'ward': 1 value is missing (row 2"),
        ("age,ward,insured\n30,A,maybe\n", "column 'insured': 1 value is not a boolean"),
        ("age,ward,insured\n", "the file has a header but no data rows"),
    ],
    ids=["missing-column", "unparseable-number", "missing-value", "not-a-boolean", "no-rows"],
)
def test_a_csv_that_does_not_fit_the_schema_is_refused_with_a_clear_reason(tmp_path, text, expected):
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    with pytest.raises(he.SchemaMismatch) as info:
        he.encrypt_csv(csv, SCHEMA, tmp_path / "bundle", keystore=tmp_path / "keys", progress=False)
    assert expected in str(info.value)


def test_a_refused_csv_leaves_no_bundle_and_no_key(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("age,ward,insured\n30,A,yes\n40,Z,no\n")
    with pytest.raises(he.SchemaMismatch):
        he.encrypt_csv(csv, SCHEMA, tmp_path / "bundle", keystore=tmp_path / "keys", progress=False)
    assert not (tmp_path / "bundle").exists()
    assert not (tmp_path / "keys").exists() or not any((tmp_path / "keys").iterdir())


def test_a_failure_halfway_removes_every_file_written_and_the_secret_key(tmp_path, monkeypatch):
    write_csv(tmp_path / "data.csv", rows=3000)
    real = ts.ckks_vector
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise MemoryError("simulated failure on the fourth ciphertext")
        return real(*args, **kwargs)

    monkeypatch.setattr(ts, "ckks_vector", failing)
    with pytest.raises(MemoryError):
        he.encrypt_csv(tmp_path / "data.csv", SCHEMA, tmp_path / "bundle", keystore=tmp_path / "keys", progress=False)
    assert calls["n"] == 4
    assert not (tmp_path / "bundle").exists()
    assert list((tmp_path / "keys").iterdir()) == []


def test_encryption_refuses_an_output_directory_that_is_not_empty(tmp_path):
    write_csv(tmp_path / "data.csv", rows=10)
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "old.txt").write_text("keep me")
    with pytest.raises(he.HEError, match="must be a new or empty directory"):
        he.encrypt_csv(tmp_path / "data.csv", SCHEMA, tmp_path / "bundle", keystore=tmp_path / "keys", progress=False)
    assert os.listdir(tmp_path / "bundle") == ["old.txt"]


def test_a_malformed_schema_is_refused_naming_the_column(tmp_path):
    write_csv(tmp_path / "data.csv", rows=10)
    schema = [{"name": "age", "kind": "numeric", "lower": 10, "upper": 5}, {"name": "ward", "kind": "categorical"}]
    with pytest.raises(he.SchemaMismatch) as info:
        he.encrypt_csv(tmp_path / "data.csv", schema, tmp_path / "bundle", keystore=tmp_path / "keys", progress=False)
    assert info.value.problems == [
        "schema column 'age': 'upper' must be greater than 'lower'",
        "schema column 'ward': a categorical column needs its list of categories declared",
    ]


def test_an_unknown_job_class_is_refused():
    with pytest.raises(he.HEError, match="unknown job class 'rotate'"):
        he.choose_parameters(["sum", "rotate"])


def test_product_alone_implies_sum_and_picks_the_deeper_parameters():
    params = he.choose_parameters("product")
    assert params["job_classes"] == ["sum", "product"]
    assert params["poly_modulus_degree"] == 8192 and params["slots"] == 4096


def test_the_keystore_folder_follows_the_environment_variable(tmp_path, monkeypatch):
    write_csv(tmp_path / "data.csv", rows=10)
    monkeypatch.setenv("CLOAKROOM_KEYSTORE", str(tmp_path / "elsewhere"))
    manifest = he.encrypt_csv(tmp_path / "data.csv", SCHEMA, tmp_path / "bundle", progress=False)
    assert (tmp_path / "elsewhere" / f"{manifest['bundle_id']}.secret").exists()
    assert he.load_secret_context(manifest["bundle_id"]).is_private()


def test_a_bundle_id_that_is_not_hex_cannot_reach_outside_the_keystore(tmp_path):
    with pytest.raises(he.HEError, match="not 32 lowercase hex digits"):
        he.load_secret_context("../../etc/passwd", keystore=tmp_path)


def test_a_progress_bar_is_drawn_on_stderr(tmp_path, capsys):
    write_csv(tmp_path / "data.csv", rows=3000)
    he.encrypt_csv(tmp_path / "data.csv", SCHEMA, tmp_path / "bundle", keystore=tmp_path / "keys", progress=True)
    err = capsys.readouterr().err
    assert "encrypting [" in err and "10/10" in err and "100.0%" in err


def test_the_cli_encrypts_a_csv_and_reports_the_bundle(tmp_path, capsys):
    write_csv(tmp_path / "data.csv", rows=3000)
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    code = cli_main(
        [
            "he",
            "encrypt",
            str(tmp_path / "data.csv"),
            "--schema",
            str(tmp_path / "schema.json"),
            "--out",
            str(tmp_path / "bundle"),
            "--job-classes",
            "sum,product",
            "--keystore",
            str(tmp_path / "keys"),
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert code == 0
    assert f"bundle id:       {manifest['bundle_id']}" in out
    assert "rows:            3000" in out
    assert "columns:         5 (age, ward=A, ward=B, ward=C, insured)" in out
    assert re.search(r"\d+\.\d bytes per value", out)
    assert f"public context:  {manifest['context']['bytes']} bytes" in out
    assert str(tmp_path / "keys" / f"{manifest['bundle_id']}.secret") in out


def test_the_cli_explains_a_bad_csv_and_exits_with_one(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("age,ward,insured\n30,A,yes\n40,Z,no\n")
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    code = cli_main(
        ["he", "encrypt", str(tmp_path / "bad.csv"), "--schema", str(tmp_path / "schema.json")]
        + ["--out", str(tmp_path / "bundle"), "--keystore", str(tmp_path / "keys")]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "error: column 'ward': 1 value is not among the declared categories (row 2; first: 'Z')" in err


@pytest.mark.parametrize("command", [["he"], ["he", "encrypt"], ["he", "publish"]])
def test_every_he_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli_main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: cloakroom " + " ".join(command) in capsys.readouterr().out


def test_publish_says_so_clearly_when_the_upload_module_is_missing(tmp_path, capsys, monkeypatch):
    (tmp_path / "meta.json").write_text("{}")
    # A None entry in sys.modules makes `import cloakroom_client.upload` raise ImportError, as it
    # would on an installation that predates the module.
    monkeypatch.setitem(sys.modules, "cloakroom_client.upload", None)
    code = cli_main(["he", "publish", str(tmp_path), "--metadata", str(tmp_path / "meta.json")])
    assert code == 1
    assert "cloakroom_client.upload is missing" in capsys.readouterr().err
