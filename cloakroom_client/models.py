"""Released models as plain scikit-learn estimators (docs/MODELS.md).

A model file (``GET /api/v1/jobs/{id}/model/``, or :meth:`cloakroom_client.Client.model_file`) holds
a model's parameters on the declared units of its features and the encoding of those features.
:func:`estimator` rebuilds the scikit-learn estimator from the parameters alone (LinearRegression,
LogisticRegression or GaussianNB with their fitted attributes set); nothing of Cloakroom is needed to
use it. :func:`design_matrix` turns a table of raw feature values into the columns the estimator
reads: numeric features clipped to their declared bounds (as in training), categorical features one
0/1 column per declared category, booleans 0/1.

scikit-learn is an optional dependency (``pip install "cloakroom-client[models]"``), imported only here
and only when a model is rebuilt.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MODEL_TYPES = ("linear_regression", "logistic_regression", "naive_bayes")


class ModelFileError(ValueError):
    """A model file this client cannot rebuild, or scikit-learn missing."""


def _model(doc: dict) -> dict:
    model = doc.get("model", doc) if isinstance(doc, dict) else None
    if not isinstance(model, dict) or model.get("type") not in MODEL_TYPES:
        raise ModelFileError(f"not a Cloakroom model file of a type this client knows ({', '.join(MODEL_TYPES)})")
    return model


def _sklearn() -> Any:
    try:
        import sklearn.linear_model
        import sklearn.naive_bayes
    except ImportError:
        raise ModelFileError(
            'Rebuilding a model needs scikit-learn: pip install "cloakroom-client[models]" (or pip install '
            "scikit-learn). The model file itself is plain JSON and needs nothing."
        ) from None
    return sklearn


def _classes(model: dict) -> np.ndarray:
    classes = model["classes"]
    return np.array(classes, dtype=bool if all(isinstance(c, bool) for c in classes) else object)


def estimator(doc: dict) -> Any:
    """The scikit-learn estimator of a model file (or of a released ``result.model``)."""
    model = _model(doc)
    sk = _sklearn()
    columns = np.array(model["columns"], dtype=object)
    if model["type"] == "linear_regression":
        est = sk.linear_model.LinearRegression()
        est.coef_ = np.array(model["coefficients"], dtype=float)
        est.intercept_ = float(model["intercept"])
    elif model["type"] == "logistic_regression":
        est = sk.linear_model.LogisticRegression(C=float(model["params"].get("C", 1.0)))
        est.classes_ = _classes(model)
        est.coef_ = np.array(model["coefficients"], dtype=float)
        est.intercept_ = np.array(model["intercept"], dtype=float)
    else:
        est = sk.naive_bayes.GaussianNB()
        est.classes_ = _classes(model)
        est.theta_ = np.array(model["theta"], dtype=float)
        est.var_ = np.array(model["var"], dtype=float)
        est.class_prior_ = np.array(model["class_prior"], dtype=float)
        est.class_count_ = np.array(model["class_count"], dtype=float)
        est.epsilon_ = 0.0
    est.n_features_in_ = len(columns)
    est.feature_names_in_ = columns
    return est


def design_matrix(doc: dict, frame: pd.DataFrame) -> pd.DataFrame:
    """The estimator's input columns from a table of the model's raw features (one row per row)."""
    model = _model(doc)
    out: dict[str, Any] = {}
    for feature in model["encoding"]:
        name = feature["name"]
        if name not in frame:
            raise ModelFileError(f"the table has no column {name!r}, a feature of the model")
        values = frame[name]
        if feature["kind"] == "numeric":
            out[name] = np.clip(pd.to_numeric(values).to_numpy(dtype=float), feature["lower"], feature["upper"])
        elif feature["kind"] == "categorical":
            text = values.astype(str).to_numpy()
            for category, column in zip(feature["categories"], feature["columns"]):
                out[column] = (text == str(category)).astype(float)
        else:
            out[name] = values.astype(bool).to_numpy(dtype=float)
    return pd.DataFrame(out, columns=model["columns"], index=frame.index)


def scores(doc: dict, matrix: Any) -> np.ndarray:
    """What the parameters say of each row, computed with numpy alone: a regression's prediction, a
    logistic regression's decision scores (one column per row of coefficients)."""
    model = _model(doc)
    x = np.asarray(matrix, dtype=float)
    if model["type"] == "naive_bayes":
        raise ModelFileError("naive Bayes has no linear scores; use estimator(doc).predict_proba")
    coef = np.array(model["coefficients"], dtype=float)
    return x @ coef.T + np.array(model["intercept"], dtype=float)
