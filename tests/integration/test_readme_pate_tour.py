"""README.md's PATE section works as written, against a real ``make demo`` (the fixture of
tests/integration/test_readme_tour.py, started for this module): what the seed printed of its ensemble
and job, then the section's shell blocks as a reader runs them as demo-buyer (curl, and ``cloakroom pate``
from the checkout), which label the held-out tumours through the ensemble, charge every member, pay
per answered label, and write a student that rebuilds in scikit-learn."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from cloakroom_client import models as sdk_models
from tests.integration.test_readme_tour import (  # noqa: F401 (demo: the module's fixture, started here too)
    README,
    demo,
    readme_blocks,
    run_section_as_buyer,
    spied_calls,
)

pytestmark = pytest.mark.integration

PATE_TOUR = "Labels from three owners (PATE)"
PRICE_PER_LABEL = Decimal("0.05")


def test_the_pate_tour_labels_the_tumours_as_written(demo, tmp_path):  # noqa: F811 (the imported fixture)
    text = README.read_text()
    printed = next(b for b in readme_blocks(text) if b.heading == PATE_TOUR and b.lang == "text").code
    log = demo.log.read_text(errors="replace")
    for line in printed.splitlines():
        if line.lstrip().startswith("Job #"):  # its counts and epsilon are the demo's own noise
            assert re.search(r"Job #\d+ labelled \d+ of demo-hospital's 69 tumours, epsilon [\d.]+", log), log
        else:
            assert line in log, (line, log)

    buyer = demo.key("demo-buyer")
    before = Decimal(demo.get("/api/v1/me/", buyer)["credits"])
    result = run_section_as_buyer(demo, text, PATE_TOUR, buyer, tmp_path)
    calls = spied_calls(result.stderr)
    assert calls[0] == ("GET", "/api/v1/ensembles/", 200), calls
    assert ("POST", "/api/v1/ensembles/{id}/jobs/", 202) in calls, calls
    assert ("GET", "/api/v1/jobs/{id}/download/?format=csv", 200) in calls, calls

    # The CLI's labels, one per tumour, and its student, rebuilt here from the model file alone.
    labels = pd.read_csv(tmp_path / "labels.csv")
    assert list(labels.columns) == ["row", "label"] and list(labels["row"]) == list(range(1, 70))
    assert set(labels["label"].dropna()) <= {"malignant", "benign"}
    doc = json.loads((tmp_path / "student.json").read_text())
    rows = pd.read_csv(tmp_path / "docs" / "examples" / "tumours-unlabelled.csv")
    matrix = sdk_models.design_matrix(doc, rows)
    predicted = sdk_models.estimator(doc).predict(matrix)
    assert list(predicted) == ["benign" if s > 0 else "malignant" for s in sdk_models.scores(doc, matrix)[:, 0]]

    # demo-buyer's two jobs (curl's and the CLI's), released and paid per answered label.
    jobs = [j for j in demo.get("/api/v1/jobs/", buyer)["results"] if j["kind"] == "pate"]
    assert len(jobs) == 2 and {j["status"] for j in jobs} == {"released"}, jobs
    answered = sum(j["result"]["answered"] for j in jobs)
    assert int(labels["label"].notna().sum()) in [j["result"]["answered"] for j in jobs]
    after = Decimal(demo.get("/api/v1/me/", buyer)["credits"])
    assert after == before - PRICE_PER_LABEL * answered
    assert np.isfinite(float(jobs[0]["result"]["epsilon"]))
