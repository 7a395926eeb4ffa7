"""Writes for the marketplace: creating and publishing datasets, and selling epsilon allotments."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import CREDIT_QUANTUM, CreditEntry, User
from accounts.services import wallet_change
from config.exceptions import Conflict, Forbidden, NotFound, ValidationFailed
from config.lookups import get_or_404
from marketplace import storage
from marketplace.ingest import ColumnSpec, UploadRejected, ingest
from marketplace.models import DELTA_QUANTUM, EPSILON_QUANTUM, Column, Dataset, Purchase

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetInput:
    title: str
    description: str
    mode: str
    epsilon_cap: Decimal
    delta_cap: Decimal
    price_per_epsilon: Decimal
    row_count_public: bool
    clip_to_bounds: bool
    columns: list[dict]


def _unique_slug(title: str) -> str:
    base = slugify(title)[:100] or "dataset"
    slug, n = base, 2
    while Dataset.objects.filter(slug=slug).exists():
        slug = f"{base}-{n}"
        n += 1
    return slug


def create_with_unique_slug(*, title: str, **fields) -> Dataset:
    """Create a Dataset row under a free slug derived from ``title``.

    ``_unique_slug`` checks for a free slug and then the row is inserted; two uploads of the same
    title at the same moment can both pick the same slug, and the loser's insert hits the unique
    index. That clash is retried (inside a savepoint, so the caller's transaction stays usable)
    with a fresh candidate, and after a few tries with a random suffix, so concurrent uploads
    never turn into a server error.
    """
    for attempt in range(6):
        slug = _unique_slug(title)
        if attempt >= 3:
            slug = f"{slug[:110]}-{secrets.token_hex(3)}"
        try:
            with transaction.atomic():
                return Dataset.objects.create(slug=slug, title=title, **fields)
        except IntegrityError as exc:
            if "slug" not in str(exc):
                raise
    raise Conflict("Could not find a free address for this dataset; try again.", code="slug_collision")


def _specs(columns: list[dict]) -> list[ColumnSpec]:
    return [
        ColumnSpec(
            name=c["name"],
            kind=c["kind"],
            lower=c.get("lower"),
            upper=c.get("upper"),
            categories=tuple(c.get("categories") or ()),
        )
        for c in columns
    ]


def read_upload(upload) -> bytes:
    """Read an uploaded file, refusing it past the size limit before reading it all."""
    limit = settings.CLOAKROOM_MAX_UPLOAD_BYTES
    size = getattr(upload, "size", None)
    if size is not None and size > limit:
        raise ValidationFailed(
            f"The file is {size} bytes; the limit is {limit} bytes.",
            code="file_too_large",
            fields={"file": [f"The file is larger than the {limit}-byte limit."]},
        )
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise ValidationFailed(
            f"The file is larger than the {limit}-byte limit.",
            code="file_too_large",
            fields={"file": [f"The file is larger than the {limit}-byte limit."]},
        )
    return data


# Codes of an upload refused for what the file is, not for how it differs from the declared columns.
FILE_PROBLEMS = frozenset({"empty_file", "unsupported_file_type", "unreadable_file", "file_too_large"})


def column_error_fields(columns: list[dict], problems: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
    """The upload check's problems per declared column, as error fields beside the metadata's own:
    ``metadata.columns.2.upper`` (a part of the third column's declaration) or ``metadata.columns.2``
    (the column as a whole), the names a metadata error of that column has."""
    index = {column["name"]: i for i, column in enumerate(columns)}
    fields: dict[str, list[str]] = {}
    for name, parts in problems.items():
        if name not in index:
            continue
        for part, reasons in parts.items():
            key = f"metadata.columns.{index[name]}" + (f".{part}" if part else "")
            fields.setdefault(key, []).extend(reasons)
    return fields


def dataset_create(*, owner: User, data: DatasetInput, upload) -> Dataset:
    """Check an upload against its declared schema, store it encrypted, and create the draft dataset.

    Nothing is written unless every check passes. The encrypted file is written first and removed
    again if the database transaction fails, so a rejection leaves no row and no file behind.
    """
    if not owner.is_owner:
        raise Forbidden("Only accounts with the owner role can list datasets.", code="not_an_owner")
    if data.mode != Dataset.Mode.DP:
        raise ValidationFailed(
            "Only mode 'dp' datasets can be uploaded here; HE bundles are published with the owner CLI.",
            fields={"metadata": ["mode: only 'dp' is accepted for file uploads."]},
        )
    if upload is None:
        raise ValidationFailed("Attach the data as the 'file' part.", fields={"file": ["No file was submitted."]})

    raw = read_upload(upload)
    try:
        result = ingest(raw, _specs(data.columns), filename=getattr(upload, "name", ""), clip=data.clip_to_bounds)
    except UploadRejected as exc:
        raise ValidationFailed(
            "The file does not match the declared schema: " + "; ".join(exc.problems)
            if exc.code not in FILE_PROBLEMS
            else exc.problems[0],
            code=exc.code,
            fields={"file": exc.problems, **column_error_fields(data.columns, exc.columns)},
        ) from None

    path = storage.store_encrypted(result.to_parquet_bytes())
    try:
        with transaction.atomic():
            dataset = create_with_unique_slug(
                owner=owner,
                title=data.title,
                description=data.description,
                mode=data.mode,
                epsilon_cap=data.epsilon_cap,
                delta_cap=data.delta_cap,
                price_per_epsilon=data.price_per_epsilon,
                row_count_public=data.row_count_public,
                row_count=result.row_count,
                clip_to_bounds=data.clip_to_bounds,
                file_path=path,
                file_format=result.file_format,
                file_size=len(raw),
                file_sha256=hashlib.sha256(raw).hexdigest(),
            )
            Column.objects.bulk_create(
                Column(
                    dataset=dataset,
                    position=i,
                    name=c["name"],
                    kind=c["kind"],
                    lower=c.get("lower"),
                    upper=c.get("upper"),
                    categories=list(c.get("categories") or []),
                    is_label=bool(c.get("is_label", False)),
                )
                for i, c in enumerate(data.columns)
            )
    except BaseException:
        storage.delete_stored(path)
        raise
    dataset.ingest_report = {"ignored_columns": result.ignored_columns, "clipped": result.clipped}
    logger.info(
        "dataset %s created by %s: %d rows, %d columns", dataset.pk, owner.pk, result.row_count, len(data.columns)
    )
    return dataset


def _owned(owner: User, dataset_id: int) -> Dataset:
    return get_or_404(Dataset.objects, message="No such dataset.", pk=dataset_id, owner=owner)


@transaction.atomic
def dataset_publish(*, owner: User, dataset_id: int) -> Dataset:
    """The owner puts a draft, or a dataset they suspended themselves, on sale.

    Publishing a dataset that is already on sale is a 409 (``already_published``) rather than a quiet
    200: a script that publishes the wrong id then learns it did nothing, instead of believing its own
    upload is in the catalogue.
    """
    dataset = _owned(owner, dataset_id)
    _check_publishable(dataset)
    now = timezone.now()
    if dataset.status == Dataset.Status.SUSPENDED:
        # The owner's own suspension: publishing lifts it.
        changed = Dataset.objects.filter(
            pk=dataset.pk, status=Dataset.Status.SUSPENDED, suspended_by_owner=True
        ).update(status=Dataset.Status.PUBLISHED, suspended_by_owner=False, updated_at=now)
    else:
        changed = Dataset.objects.filter(pk=dataset.pk, status=Dataset.Status.DRAFT).update(
            status=Dataset.Status.PUBLISHED, published_at=now, updated_at=now
        )
    dataset.refresh_from_db()
    if not changed:
        # Another request changed the status between the read and the conditional UPDATE.
        _check_publishable(dataset)
    return dataset


def _check_publishable(dataset: Dataset) -> None:
    """Raise the 409 that says why ``dataset`` cannot be published now, if it cannot."""
    if dataset.status == Dataset.Status.PUBLISHED:
        raise Conflict(
            f"Dataset {dataset.pk} is already published: it is in the catalogue, and publishing it again "
            "changes nothing.",
            code="already_published",
        )
    if dataset.status == Dataset.Status.SUSPENDED and not dataset.suspended_by_owner:
        raise Conflict(
            "This dataset was suspended by an administrator and cannot be published again by its owner.",
            code="dataset_suspended",
        )
    if dataset.mode == Dataset.Mode.HE and dataset.bundle_status != Dataset.BundleStatus.READY:
        # An HE dataset is only worth buying once its whole bundle has arrived and passed the check.
        raise Conflict(
            f"The encrypted bundle is not ready (it is {dataset.bundle_status or 'missing'}); "
            "upload every file and complete it first.",
            code="bundle_not_ready",
        )


def dataset_suspend(*, owner: User, dataset_id: int) -> Dataset:
    """The owner takes a published dataset off sale: no new purchases or jobs until they publish it
    again. Jobs already queued or running finish; budget already sold stays with its buyers."""
    dataset = _owned(owner, dataset_id)
    if dataset.status == Dataset.Status.DRAFT:
        raise Conflict("A draft is not on sale; there is nothing to suspend.", code="dataset_draft")
    if dataset.status == Dataset.Status.PUBLISHED:
        Dataset.objects.filter(pk=dataset.pk, status=Dataset.Status.PUBLISHED).update(
            status=Dataset.Status.SUSPENDED, suspended_by_owner=True, updated_at=timezone.now()
        )
        dataset.refresh_from_db()
    return dataset


def dataset_set_status(*, dataset: Dataset, status: str) -> Dataset:
    """Administrator action: publish or suspend. Suspension stops new purchases; an administrator's
    suspension cannot be lifted by the owner."""
    dataset.status = status
    dataset.suspended_by_owner = False
    if status == Dataset.Status.PUBLISHED and dataset.published_at is None:
        dataset.published_at = timezone.now()
    dataset.save(update_fields=["status", "suspended_by_owner", "published_at", "updated_at"])
    return dataset


def purchase_price(*, dataset: Dataset, epsilon: Decimal) -> Decimal:
    return (dataset.price_per_epsilon * epsilon).quantize(CREDIT_QUANTUM, rounding=ROUND_HALF_UP)


def _purchase_epsilon(epsilon: Decimal) -> Decimal:
    """The epsilon asked for, as a Decimal: finite, above 0, with at most 6 decimal places."""
    epsilon = Decimal(epsilon)
    if not epsilon.is_finite() or epsilon <= 0:
        raise ValidationFailed(
            "epsilon must be a finite number greater than 0.", fields={"epsilon": ["Must be greater than 0."]}
        )
    if epsilon != epsilon.quantize(EPSILON_QUANTUM):
        raise ValidationFailed(
            "epsilon has at most 6 decimal places.", fields={"epsilon": ["At most 6 decimal places."]}
        )
    return epsilon


def _check_buyable(*, dataset: Dataset, buyer: User) -> None:
    """Refuse a purchase from a draft (a 404 to anyone but its owner), a suspended or one's own dataset.

    A check on the row as read, before the transaction; the conditional UPDATE in
    :func:`purchase_create` is what guarantees the dataset is still on sale when the budget is sold.
    """
    if dataset.status == Dataset.Status.DRAFT:
        if dataset.owner_id != buyer.pk:
            raise NotFound("No such dataset.", fields={"dataset": ["No such dataset."]})
        raise Conflict("Publish the dataset before it can be bought.", code="dataset_not_published")
    if dataset.status == Dataset.Status.SUSPENDED:
        raise Conflict("This dataset is suspended; no budget can be bought.", code="dataset_suspended")
    if dataset.owner_id == buyer.pk:
        raise Conflict("You own this dataset; owners do not buy their own budget.", code="own_dataset")


def purchase_create(*, buyer: User, dataset_id: int, epsilon: Decimal) -> Purchase:
    """Sell ``epsilon`` of a dataset's budget to ``buyer``.

    One transaction: the dataset's ``epsilon_sold`` is raised by a conditional UPDATE that only
    matches while ``epsilon_sold + epsilon <= epsilon_cap``, the buyer's wallet is debited by a
    conditional UPDATE that only matches while the balance covers the price, and the owner is
    credited. If either condition fails nothing is written, so concurrent purchases can never sell
    more than the cap or take a wallet below zero, on any database.
    """
    if not buyer.is_buyer:
        raise Forbidden("Only accounts with the buyer role can buy budget.", code="not_a_buyer")
    epsilon = _purchase_epsilon(epsilon)
    dataset = get_or_404(
        Dataset.objects.select_related("owner"),
        message="No such dataset.",
        fields={"dataset": ["No such dataset."]},
        pk=dataset_id,
    )
    _check_buyable(dataset=dataset, buyer=buyer)

    price = purchase_price(dataset=dataset, epsilon=epsilon)
    with transaction.atomic():
        sold = Dataset.objects.filter(
            pk=dataset.pk,
            status=Dataset.Status.PUBLISHED,
            epsilon_sold__lte=F("epsilon_cap") - epsilon,
        ).update(epsilon_sold=F("epsilon_sold") + epsilon)
        if not sold:
            current = Dataset.objects.get(pk=dataset.pk)
            if current.status != Dataset.Status.PUBLISHED:
                raise Conflict("This dataset is no longer on sale.", code="dataset_suspended")
            available = current.epsilon_cap - current.epsilon_sold
            raise Conflict(
                f"Not enough budget left on this dataset: you asked for epsilon {epsilon.normalize():f}, "
                f"and {available.normalize():f} remains for sale.",
                code="insufficient_budget",
                extra={"epsilon_available": str(available)},
            )
        # Each allotment carries the same share of the delta cap as of the epsilon cap, so the
        # shares sold never add up to more than the dataset's delta either.
        delta = (dataset.delta_cap * epsilon / dataset.epsilon_cap).quantize(DELTA_QUANTUM, rounding=ROUND_DOWN)
        purchase = Purchase.objects.create(buyer=buyer, dataset=dataset, epsilon=epsilon, delta=delta, price=price)
        # Wallets are touched in id order so that two people buying from each other cannot deadlock.
        moves = sorted(
            [(buyer, -price, CreditEntry.Kind.PURCHASE), (dataset.owner, price, CreditEntry.Kind.SALE)],
            key=lambda m: m[0].pk,
        )
        for user, amount, kind in moves:
            if amount == 0:
                continue
            wallet_change(
                user=user,
                amount=amount,
                kind=kind,
                purchase=purchase,
                memo=f"ε {epsilon.normalize():f} of {dataset.title}"[:200],
            )
    logger.info("purchase %s: user %s bought epsilon %s of dataset %s", purchase.pk, buyer.pk, epsilon, dataset.pk)
    return purchase
