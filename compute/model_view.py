"""A released model as a person reads it (the job page, the model catalogue): a one-line description,
its parameters as tables with the encoded columns' names, and the receipt's training parts and the
declared bounds used. Only what is released already (``result.model``, ``result.training``) is shown."""

from __future__ import annotations

from typing import Any

from compute.presentation import fmt

TYPE_NAMES = {
    "logistic_regression": "logistic regression",
    "linear_regression": "linear regression",
    "naive_bayes": "Gaussian naive Bayes",
    "random_forest": "random forest",
    "kmeans": "k-means",
    "pca": "PCA",
}
# Models the platform can serve under encryption (docs/MODELS.md, "Encrypted inference").
SERVABLE = ("logistic_regression", "linear_regression")


def class_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe_model(spec: dict[str, Any]) -> str:
    """One line: "logistic regression of member on age, income, region"."""
    kind = spec.get("type", "")
    name = TYPE_NAMES.get(kind, kind)
    features = ", ".join(spec.get("features") or [])
    params = spec.get("params") or {}
    if kind == "kmeans":
        return f"{name} (k = {params.get('k')}) on {features}"
    if spec.get("label"):
        return f"{name} of {spec['label']} on {features}"
    return f"{name} on {features}"


def _table(caption: str, header: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"caption": caption, "header": header, "rows": [[str(r[0]), *[fmt(v) for v in r[1:]]] for r in rows]}


def _coefficients(model: dict[str, Any]) -> list[dict[str, Any]]:
    columns, coef, intercept = model["columns"], model["coefficients"], model["intercept"]
    if model["type"] == "linear_regression":
        rows = [[c, w] for c, w in zip(columns, coef)] + [["intercept", intercept]]
        return [_table("Coefficients, on the declared units of the features", ["Column", "Coefficient"], rows)]
    classes = [class_text(c) for c in model.get("classes") or []]
    # Two classes: one row of coefficients, the score of the second class; more: one row per class.
    names = [f"score of {classes[-1]}"] if len(coef) == 1 and len(classes) == 2 else [f"class {c}" for c in classes]
    rows = [[c, *[row[j] for row in coef]] for j, c in enumerate(columns)]
    rows.append(["intercept", *intercept])
    return [_table("Coefficients per class, on the declared units of the features", ["Column", *names], rows)]


def _naive_bayes(model: dict[str, Any]) -> list[dict[str, Any]]:
    classes = [class_text(c) for c in model["classes"]]
    priors = [[c, p, n] for c, p, n in zip(classes, model["class_prior"], model["class_count"])]
    out = [_table("Classes", ["Class", "Prior", "Noisy rows"], priors)]
    for key, caption in (("theta", "Mean of each column per class"), ("var", "Variance of each column per class")):
        rows = [[c, *[per_class[j] for per_class in model[key]]] for j, c in enumerate(model["columns"])]
        out.append(_table(caption, ["Column", *classes], rows))
    return out


def _kmeans(model: dict[str, Any]) -> list[dict[str, Any]]:
    counts = model.get("cluster_count") or [None] * len(model["centres"])
    rows = [[f"cluster {i}", *centre, counts[i]] for i, centre in enumerate(model["centres"])]
    header = ["Cluster", *model["columns"], "Noisy rows (last round)"]
    return [_table("Centres, in the declared units (a 0/1 column's is a share)", header, rows)]


def _pca(model: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        [f"component {i + 1}", *component, variance, share]
        for i, (component, variance, share) in enumerate(
            zip(model["components"], model["explained_variance"], model["explained_variance_ratio"])
        )
    ]
    header = ["Component", *model["columns"], "Noisy variance", "Share"]
    means = [[c, m] for c, m in zip(model["columns"], model["mean"])]
    return [
        _table("Components (unit vectors, largest variance first)", header, rows),
        _table("Noisy mean of each column", ["Column", "Mean"], means),
    ]


def _walk(node: dict[str, Any], splits: dict[str, int], leaves: list[list[float]]) -> None:
    if "counts" in node:
        leaves.append(node["counts"])
        return
    splits[node["column"]] = splits.get(node["column"], 0) + 1
    _walk(node["left"], splits, leaves)
    _walk(node["right"], splits, leaves)


def _forest(model: dict[str, Any]) -> list[dict[str, Any]]:
    classes = [class_text(c) for c in model["classes"]]
    rows, splits = [], {}  # type: ignore[var-annotated]
    for i, tree in enumerate(model["trees"]):
        leaves: list[list[float]] = []
        _walk(tree, splits, leaves)
        root = f"{tree['column']} ≤ {fmt(tree['threshold'])}" if "column" in tree else "a leaf"
        rows.append(
            [f"tree {i + 1}", root, len(leaves), *[sum(leaf[k] for leaf in leaves) for k in range(len(classes))]]
        )
    header = ["Tree", "First split", "Leaves", *[f"noisy rows of {c}" for c in classes]]
    return [
        _table("The trees (the full nested splits are in the model file)", header, rows),
        _table("Inner nodes splitting on each column", ["Column", "Nodes"], sorted(splits.items())),
    ]


_TABLES = {
    "logistic_regression": _coefficients,
    "linear_regression": _coefficients,
    "naive_bayes": _naive_bayes,
    "kmeans": _kmeans,
    "pca": _pca,
    "random_forest": _forest,
}


def model_view(model: dict[str, Any]) -> dict[str, Any]:
    """Facts and tables of a released ``result.model``."""
    kind = model.get("type", "")
    facts = [("Type", TYPE_NAMES.get(kind, kind)), ("Features", ", ".join(model.get("features") or []))]
    if model.get("label"):
        facts.append(("Label", model["label"]))
    if model.get("classes"):
        facts.append(("Classes", ", ".join(class_text(c) for c in model["classes"])))
    facts.append(("Encoded columns", ", ".join(model.get("columns") or [])))
    params = model.get("params") or {}
    if params:
        facts.append(("Parameters", ", ".join(f"{k} = {fmt(v)}" for k, v in sorted(params.items()))))
    if model.get("alpha") is not None:
        facts.append(("Ridge used (alpha)", fmt(model["alpha"])))
    build = _TABLES.get(kind)
    return {
        "type": kind,
        "type_name": TYPE_NAMES.get(kind, kind),
        "facts": facts,
        "tables": build(model) if build else [],
        "servable": kind in SERVABLE,
    }


def training_view(training: dict[str, Any]) -> dict[str, Any]:
    """The receipt's training object: each noisy part, how the budget was split, the declared bounds."""
    header = ["Part", "Statistics", "Mechanism", "ε", "δ", "ρ", "Sensitivity", "Grid step", "Noise scale"]
    keys = ("statistics", "mechanism", "epsilon", "delta", "rho", "sensitivity", "granularity", "scale")
    parts = _table(
        "Noisy parts", header, [[p.get("part"), *[p.get(k) for k in keys]] for p in training.get("parts", [])]
    )
    bounds = []
    for b in training.get("bounds", []):
        if b.get("kind") == "numeric":
            declared = f"{fmt(b.get('lower'))} to {fmt(b.get('upper'))}"
        elif b.get("kind") == "categorical":
            declared = ", ".join(b.get("categories") or [])
        else:
            declared = "false, true"
        bounds.append([b.get("name"), "label" if b.get("label") else "feature", b.get("kind"), declared])
    header = ["Column", "Role", "Kind", "Declared"]
    declared = {"caption": "Declared bounds used", "header": header, "rows": bounds, "text": True}
    return {
        "tables": [parts, declared],
        "notes": [
            (name, training[key])
            for key, name in (("split", "Budget split"), ("scaling", "Scaling"), ("public", "Drawn without the data"))
            if training.get(key)
        ]
        + [("Evaluation", training.get("evaluation") or "none")],
    }
