"""Released models as plain scikit-learn estimators (docs/MODELS.md).

A model file (``GET /api/v1/jobs/{id}/model/``, or :meth:`cloakroom_client.Client.model_file`) holds
a model's parameters on the declared units of its features and the encoding of those features.
:func:`estimator` rebuilds the scikit-learn estimator from the parameters alone (LinearRegression,
LogisticRegression, GaussianNB, KMeans or PCA with their fitted attributes set); nothing of Cloakroom
is needed to use it. A random forest's trees are nested dicts that scikit-learn's own trees cannot be
built from, so it is a :class:`Forest`: plain Python and numpy walking those dicts, with
``predict`` and ``predict_proba``. :func:`design_matrix` turns a table of raw feature values into the columns the estimator
reads: numeric features clipped to their declared bounds (as in training), categorical features one
0/1 column per declared category, booleans 0/1.

scikit-learn is an optional dependency (``pip install "cloakroom-client[models]"``), imported only here
and only when a model is rebuilt.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MODEL_TYPES = ("linear_regression", "logistic_regression", "naive_bayes", "kmeans", "pca", "random_forest")


class ModelFileError(ValueError):
    """A model file this client cannot rebuild, or scikit-learn missing."""


def _model(doc: dict) -> dict:
    model = doc.get("model", doc) if isinstance(doc, dict) else None
    if not isinstance(model, dict) or model.get("type") not in MODEL_TYPES:
        raise ModelFileError(f"not a Cloakroom model file of a type this client knows ({', '.join(MODEL_TYPES)})")
    return model


def _sklearn() -> Any:
    try:
        import sklearn.cluster
        import sklearn.decomposition
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


class Forest:
    """A released random forest: each tree walked from its nested dicts (a row goes left when its value
    is at most the node's threshold), the leaves' noisy class counts clipped at 0 and turned into
    shares, the shares averaged over the trees. Needs numpy only."""

    def __init__(self, model: dict) -> None:
        self.trees: list[dict] = model["trees"]
        self.classes_ = _classes(model)
        self.feature_names_in_ = np.array(model["columns"], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)

    def _leaf(self, tree: dict, row: np.ndarray) -> np.ndarray:
        node = tree
        while "counts" not in node:
            node = node["right"] if row[node["index"]] > node["threshold"] else node["left"]
        counts = np.clip(np.array(node["counts"], dtype=float), 0.0, None)
        total = counts.sum()
        return counts / total if total > 0 else np.full(len(counts), 1.0 / len(counts))

    def predict_proba(self, matrix: Any) -> np.ndarray:
        x = np.asarray(matrix, dtype=float)
        out = np.zeros((len(x), len(self.classes_)))
        for tree in self.trees:
            out += np.array([self._leaf(tree, row) for row in x]).reshape(out.shape)
        return out / max(len(self.trees), 1)

    def predict(self, matrix: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(matrix).argmax(axis=1)]


def _linear(sk: Any, model: dict) -> Any:
    if model["type"] == "linear_regression":
        est = sk.linear_model.LinearRegression()
        est.coef_ = np.array(model["coefficients"], dtype=float)
        est.intercept_ = float(model["intercept"])
        return est
    est = sk.linear_model.LogisticRegression(C=float(model["params"].get("C", 1.0)))
    est.classes_ = _classes(model)
    est.coef_ = np.array(model["coefficients"], dtype=float)
    est.intercept_ = np.array(model["intercept"], dtype=float)
    return est


def _naive_bayes(sk: Any, model: dict) -> Any:
    est = sk.naive_bayes.GaussianNB()
    est.classes_ = _classes(model)
    est.theta_ = np.array(model["theta"], dtype=float)
    est.var_ = np.array(model["var"], dtype=float)
    est.class_prior_ = np.array(model["class_prior"], dtype=float)
    est.class_count_ = np.array(model["class_count"], dtype=float)
    est.epsilon_ = 0.0
    return est


def _kmeans(sk: Any, model: dict) -> Any:
    est = sk.cluster.KMeans(n_clusters=int(model["k"]), n_init=1, random_state=int(model["seed"]))
    est.cluster_centers_ = np.array(model["centres"], dtype=float)
    est.n_iter_ = int(model["iterations"])
    # predict() reads the thread count fit() would have set; one thread is always right.
    est._n_threads = 1  # noqa: SLF001 (a fitted attribute of scikit-learn's KMeans without a public setter)
    return est


def _pca(sk: Any, model: dict) -> Any:
    est = sk.decomposition.PCA(n_components=int(model["n_components"]))
    est.components_ = np.array(model["components"], dtype=float)
    est.mean_ = np.array(model["mean"], dtype=float)
    est.explained_variance_ = np.array(model["explained_variance"], dtype=float)
    est.explained_variance_ratio_ = np.array(model["explained_variance_ratio"], dtype=float)
    est.noise_variance_ = float(model["noise_variance"])
    est.n_components_ = int(model["n_components"])
    return est


_BUILDERS = {
    "linear_regression": _linear,
    "logistic_regression": _linear,
    "naive_bayes": _naive_bayes,
    "kmeans": _kmeans,
    "pca": _pca,
}


def estimator(doc: dict) -> Any:
    """The scikit-learn estimator of a model file (or of a released ``result.model``); a :class:`Forest`
    for a random forest."""
    model = _model(doc)
    if model["type"] == "random_forest":
        return Forest(model)
    est = _BUILDERS[model["type"]](_sklearn(), model)
    columns = np.array(model["columns"], dtype=object)
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
    if model["type"] not in ("linear_regression", "logistic_regression"):
        raise ModelFileError(f"a {model['type']} model has no linear scores; use estimator(doc)")
    coef = np.array(model["coefficients"], dtype=float)
    return x @ coef.T + np.array(model["intercept"], dtype=float)
