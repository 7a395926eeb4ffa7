"""Writes of ensembles: create one from a first dataset, add a dataset, let a dataset leave.

A dataset joins only by its owner's request (consent per dataset), only if it is a published DP
dataset with a delta cap above 0 (PATE's Gaussian noise is charged in zCDP, which a pure-epsilon
budget has no account for), and only if its declared columns are exactly the ensemble's: the same
names, kinds, declared bounds and categories. Bounds and categories come from the declarations,
never from the data. Leaving sets ``left_at``: jobs submitted before keep the members they had.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from config.exceptions import Conflict, Forbidden, ValidationFailed
from config.lookups import get_or_404
from marketplace.models import Column, Dataset, Ensemble, EnsembleMember

logger = logging.getLogger(__name__)

LABEL_KINDS = (Column.Kind.CATEGORICAL, Column.Kind.BOOLEAN)


def declaration(column: Column) -> dict[str, Any]:
    """A declared column as an ensemble stores and compares it."""
    out: dict[str, Any] = {"name": column.name, "kind": column.kind}
    if column.kind == Column.Kind.NUMERIC:
        out.update(lower=column.lower, upper=column.upper)
    if column.kind == Column.Kind.CATEGORICAL:
        out["categories"] = list(column.categories or [])
    return out


def _refuse(message: str, *, field: str = "dataset", code: str = "invalid", column: str | None = None):
    extra = {"column": column} if column is not None else None
    return ValidationFailed(f"{field}: {message}", code=code, fields={field: [message]}, extra=extra)


def _own_dataset(owner: User, dataset_id: Any) -> Dataset:
    """One of the caller's datasets that may join an ensemble; anyone else's is a 404."""
    dataset = get_or_404(
        Dataset.objects.filter(owner=owner),
        message="No such dataset among yours.",
        fields={"dataset": ["No such dataset among yours."]},
        pk=dataset_id,
    )
    if dataset.mode != Dataset.Mode.DP:
        raise _refuse("only DP datasets can join an ensemble (teachers are trained on the rows).")
    if dataset.delta_cap <= 0:
        raise _refuse(
            "PATE's Gaussian noise is charged in zCDP at the dataset's delta, and this dataset's delta cap is 0; "
            "list it with a delta cap above 0 to join."
        )
    if dataset.status != Dataset.Status.PUBLISHED:
        raise Conflict(
            "dataset: only a published dataset can join an ensemble; publish it first.",
            code="dataset_unavailable",
            fields={"dataset": ["Not published."]},
        )
    return dataset


def _label_and_features(dataset: Dataset, label: str | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    columns = list(dataset.columns.order_by("position"))
    if label:
        chosen = [c for c in columns if c.name == label]
        if not chosen:
            raise _refuse(f"the dataset has no column '{label}'.", field="label", column=label)
    else:
        chosen = [c for c in columns if c.is_label]
        if len(chosen) != 1:
            raise _refuse(
                "the dataset declares no single label column; name it with 'label'.", field="label", code="no_label"
            )
    target = chosen[0]
    if target.kind not in LABEL_KINDS:
        raise _refuse(
            f"column '{target.name}' is {target.kind}; a PATE label must be categorical or boolean.",
            field="label",
            column=target.name,
        )
    if target.kind == Column.Kind.CATEGORICAL and len(target.categories or []) < 2:
        raise _refuse(f"column '{target.name}' declares fewer than 2 categories.", field="label", column=target.name)
    features = [declaration(c) for c in columns if c.pk != target.pk]
    if not features:
        raise _refuse("the dataset has no feature column besides its label.")
    return declaration(target), features


def _describe(decl: dict[str, Any]) -> str:
    if decl["kind"] == Column.Kind.NUMERIC:
        return f"numeric in [{decl['lower']:g}, {decl['upper']:g}]"
    if decl["kind"] == Column.Kind.CATEGORICAL:
        return f"categorical {decl['categories']}"
    return str(decl["kind"])


def schema_difference(ensemble: Ensemble, dataset: Dataset) -> tuple[str, str] | None:
    """The first column in which the dataset's declaration differs from the ensemble's, and how, or None."""
    wanted = [*ensemble.features, ensemble.label]
    have = {c.name: declaration(c) for c in dataset.columns.all()}
    for decl in wanted:
        mine = have.pop(decl["name"], None)
        if mine is None:
            return decl["name"], f"column '{decl['name']}' of the ensemble is not in this dataset"
        if mine != decl:
            return decl["name"], (
                f"column '{decl['name']}' is declared {_describe(mine)} here and {_describe(decl)} in the ensemble"
            )
    if have:
        name = sorted(have)[0]
        return name, f"column '{name}' is not in the ensemble's schema"
    return None


def ensemble_create(
    *, owner: User, title: str, description: str, dataset_id: Any, price_per_label: Decimal, label: str | None = None
) -> Ensemble:
    """Create an ensemble whose schema is the caller's dataset's, with that dataset as its first member."""
    if not owner.is_owner:
        raise Forbidden("Only accounts with the owner role can create ensembles.", code="not_an_owner")
    dataset = _own_dataset(owner, dataset_id)
    label_decl, features = _label_and_features(dataset, label)
    with transaction.atomic():
        ensemble = Ensemble.objects.create(
            owner=owner,
            title=title.strip(),
            description=description.strip(),
            price_per_label=price_per_label,
            features=features,
            label=label_decl,
        )
        EnsembleMember.objects.create(ensemble=ensemble, dataset=dataset)
    logger.info("ensemble %s created by user %s with dataset %s", ensemble.pk, owner.pk, dataset.pk)
    return ensemble


def ensemble_join(*, owner: User, ensemble_id: Any, dataset_id: Any) -> EnsembleMember:
    """Add the caller's dataset to an ensemble: a 400 naming the column whose declaration differs."""
    if not owner.is_owner:
        raise Forbidden("Only accounts with the owner role can add datasets to ensembles.", code="not_an_owner")
    ensemble = get_or_404(Ensemble.objects, message="No such ensemble.", pk=ensemble_id)
    dataset = _own_dataset(owner, dataset_id)
    difference = schema_difference(ensemble, dataset)
    if difference is not None:
        column, how = difference
        raise _refuse(
            f"{how}; every member declares the same features and label.", code="schema_mismatch", column=column
        )
    try:
        with transaction.atomic():
            member = EnsembleMember.objects.create(ensemble=ensemble, dataset=dataset)
    except IntegrityError:
        raise Conflict(
            "dataset: this dataset is a member of the ensemble already.",
            code="already_member",
            fields={"dataset": ["Already a member."]},
        ) from None
    logger.info("ensemble %s: dataset %s joined", ensemble.pk, dataset.pk)
    return member


def ensemble_leave(*, owner: User, ensemble_id: Any, dataset_id: Any) -> None:
    """Take the caller's dataset out of an ensemble, for jobs submitted from now on. Jobs submitted
    before keep it (their members were fixed at submission). Not a member (or not the caller's): 404."""
    member = get_or_404(
        EnsembleMember.objects.filter(left_at__isnull=True, dataset__owner=owner),
        message="No such member dataset of yours in this ensemble.",
        ensemble_id=ensemble_id,
        dataset_id=dataset_id,
    )
    EnsembleMember.objects.filter(pk=member.pk, left_at__isnull=True).update(left_at=timezone.now())
    logger.info("ensemble %s: dataset %s left", member.ensemble_id, member.dataset_id)
