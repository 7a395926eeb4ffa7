"""A student model trained on the answered labels only: a post-processing of the released labels and of
the buyer's own unlabelled table, so it costs no privacy beyond the labels'.

The parameters are portable like compute/engines/models' logistic regression (``coefficients``, one row per
class, or one row for two classes; ``intercept``; ``classes``), so that the SDK's
:func:`cloakroom_client.models.estimator` rebuilds it on the same encoded columns. The student is plain
scikit-learn (no noise): its training data, the buyer's table and the noisy labels, are the buyer's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cloakroom_client.protocol.errors import QueryError

STUDENT_MODELS = ("logistic_regression",)


def student(
    x_answered: np.ndarray,
    labels_answered: Sequence[Any],
    model: str = "logistic_regression",
    classes: Sequence[Any] | None = None,
    C: float = 1.0,
) -> dict[str, Any]:
    """A logistic regression fitted on the answered points and their released labels.

    ``classes`` (the declared ones) fixes the order of the rows of coefficients; a class no answered point
    received gets no row of its own when there are only two present (scikit-learn's binary form)."""
    if model not in STUDENT_MODELS:
        raise QueryError("spec.student", f"Must be one of: {', '.join(STUDENT_MODELS)}.")
    labels = list(labels_answered)
    if len(labels) != len(x_answered):
        raise ValueError("one label per answered row")
    declared = list(classes) if classes is not None else sorted(set(labels), key=repr)
    index = {c: j for j, c in enumerate(declared)}
    codes = np.array([index[v] for v in labels], dtype=np.int64)
    present = sorted(set(codes.tolist()))
    if len(present) < 2:
        raise QueryError("spec.student", "The answered labels hold fewer than two classes: no student can be trained.")
    from sklearn.linear_model import LogisticRegression  # lazy: scikit-learn is heavy, only a worker needs it

    est = LogisticRegression(C=C, max_iter=2000)
    est.fit(np.asarray(x_answered, dtype=float), codes)
    return {
        "type": "logistic_regression",
        "classes": [declared[j] for j in est.classes_.tolist()],
        "coefficients": est.coef_.tolist(),
        "intercept": est.intercept_.tolist(),
        "params": {"C": C},
        "trained_on": int(len(labels)),
    }
