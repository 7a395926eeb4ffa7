from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from accounts.models import CREDIT_PLACES, AppendOnlyModel
from compute.engines import accounting

EPSILON_PLACES = 6
EPSILON_QUANTUM = Decimal("0.000001")
DELTA_PLACES = 12
DELTA_QUANTUM = Decimal("0.000000000001")
# zCDP's rho (compute/engines/accounting.py): a job's is rounded up, a cap's down (docs/PRIVACY.md).
RHO_DIGITS = 24
RHO_PLACES = 12
RHO_QUANTUM = Decimal("0.000000000001")


def rho_field(help_text: str) -> models.DecimalField:
    return models.DecimalField(
        max_digits=RHO_DIGITS, decimal_places=RHO_PLACES, default=Decimal("0"), help_text=help_text
    )


class Dataset(models.Model):
    class Mode(models.TextChoices):
        DP = "dp", "differential privacy"
        HE = "he", "homomorphic encryption"

    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        PUBLISHED = "published", "published"
        SUSPENDED = "suspended", "suspended"

    class BundleStatus(models.TextChoices):
        # Blank for DP datasets, which have no bundle.
        UPLOADING = "uploading", "uploading"
        CHECKING = "checking", "checking"
        READY = "ready", "ready"
        REJECTED = "rejected", "rejected"

    class KeyCustody(models.TextChoices):
        # Blank for DP datasets. Escrow (the key encrypted to the keys queue) arrives later.
        OWNER = "owner", "held by the owner"
        ESCROW = "escrow", "escrowed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="datasets")
    slug = models.SlugField(max_length=120, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    mode = models.CharField(max_length=2, choices=Mode.choices, default=Mode.DP)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT, db_index=True)
    epsilon_cap = models.DecimalField(max_digits=12, decimal_places=EPSILON_PLACES)
    delta_cap = models.DecimalField(max_digits=16, decimal_places=DELTA_PLACES, default=Decimal("0"))
    # Sum of the epsilon allotments sold; only ever moved by a conditional UPDATE (see services).
    epsilon_sold = models.DecimalField(max_digits=12, decimal_places=EPSILON_PLACES, default=Decimal("0"))
    # The largest rho whose zCDP guarantee is within (epsilon_cap, delta_cap); 0 when delta_cap is 0.
    rho_cap = rho_field("largest zCDP rho within the caps")
    # What every purchase's jobs hold or spent, in all (reserve minus refund): the dataset's side of the
    # ledger across buyers, moved with the purchase's in one transaction (compute/budget.py).
    epsilon_used = models.DecimalField(max_digits=20, decimal_places=EPSILON_PLACES, default=Decimal("0"))
    delta_used = models.DecimalField(max_digits=18, decimal_places=DELTA_PLACES, default=Decimal("0"))
    rho_used = rho_field("zCDP rho held or spent by every buyer's jobs")
    price_per_epsilon = models.DecimalField(max_digits=14, decimal_places=CREDIT_PLACES)
    row_count_public = models.BooleanField(default=False)
    # Stored for every dataset; shown to buyers only when row_count_public is set.
    row_count = models.PositiveBigIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)
    # Who suspended it: an owner may suspend their own dataset and publish it again; a suspension by an
    # administrator can only be lifted by an administrator.
    suspended_by_owner = models.BooleanField(default=False)

    # The stored, encrypted file (DP mode). The path is relative to the private storage root,
    # which no URL serves.
    file_path = models.CharField(max_length=255, blank=True)
    file_format = models.CharField(max_length=10, blank=True, help_text="format the owner uploaded")
    file_size = models.PositiveBigIntegerField(default=0, help_text="bytes uploaded")
    file_sha256 = models.CharField(max_length=64, blank=True, help_text="hash of the uploaded bytes")
    clip_to_bounds = models.BooleanField(default=False)

    # The encrypted bundle (HE mode): a public TenSEAL context and CKKS ciphertexts made on the owner's
    # machine, stored under he/<dataset id>/ in the private storage root (see marketplace/he/storage.py).
    bundle_id = models.CharField(max_length=32, blank=True, help_text="the bundle's id from its manifest (HE)")
    # The manifest as checked and normalised by cloakroom_client.protocol.bundle.validate_manifest; file names,
    # sizes, hashes, CKKS parameters and the declared bounds. Never holds data or keys.
    bundle_manifest = models.JSONField(default=dict, blank=True)
    bundle_status = models.CharField(max_length=10, choices=BundleStatus.choices, blank=True, db_index=True)
    bundle_error = models.TextField(blank=True, help_text="why the bundle was rejected, for the owner")
    key_custody = models.CharField(max_length=10, choices=KeyCustody.choices, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One live upload per bundle and owner, so a client that resumes finds its dataset again; a
            # rejected bundle does not block a fresh attempt.
            models.UniqueConstraint(
                fields=["owner", "bundle_id"],
                condition=~Q(bundle_id="") & ~Q(bundle_status="rejected"),
                name="dataset_one_live_bundle_per_owner",
            ),
            models.CheckConstraint(condition=Q(epsilon_cap__gt=0), name="dataset_epsilon_cap_positive"),
            models.CheckConstraint(condition=Q(delta_cap__gte=0) & Q(delta_cap__lt=1), name="dataset_delta_cap_range"),
            models.CheckConstraint(condition=Q(price_per_epsilon__gte=0), name="dataset_price_not_negative"),
            models.CheckConstraint(
                condition=Q(epsilon_sold__gte=0) & Q(epsilon_sold__lte=F("epsilon_cap")),
                name="dataset_never_oversold",
            ),
            # The dataset's side of the ledger (every purchase's jobs, and the PATE jobs of the ensembles it
            # is in, which have no purchase) is reserve minus refund: never below zero. Its upper limit is
            # checked under the row lock (compute/budget.py): besides basic composition and zCDP it may hold
            # by the purchases' guarantees added up, which no SQL expression states.
            models.CheckConstraint(
                condition=Q(epsilon_used__gte=0) & Q(delta_used__gte=0) & Q(rho_used__gte=0),
                name="dataset_used_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def save(self, *args, **kwargs) -> None:
        # rho_cap follows the caps wherever they are set (forms, API, admin, seeding).
        self.rho_cap = accounting.rho_allowance(Decimal(self.epsilon_cap), Decimal(self.delta_cap))
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "rho_cap"}
        super().save(*args, **kwargs)

    @property
    def epsilon_available(self) -> Decimal:
        return self.epsilon_cap - self.epsilon_sold


class Column(models.Model):
    class Kind(models.TextChoices):
        NUMERIC = "numeric", "numeric"
        CATEGORICAL = "categorical", "categorical"
        BOOLEAN = "boolean", "boolean"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="columns")
    position = models.PositiveIntegerField()
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    lower = models.FloatField(null=True, blank=True)
    upper = models.FloatField(null=True, blank=True)
    categories = models.JSONField(default=list, blank=True)
    is_label = models.BooleanField(default=False)
    # HE columns are encrypted numbers with declared bounds: a numeric column keeps its bounds, and each
    # declared category of a categorical column becomes its own 0/1 column (kind numeric, bounds 0..1)
    # named "<source>=<category>", with ``source`` and ``category`` saying where it came from. A boolean
    # stays kind boolean with bounds 0..1. DP columns leave both blank.
    source = models.CharField(max_length=100, blank=True, help_text="the owner's column this one encodes (HE)")
    # NULL, not "", marks a column that is no indicator: compute/forms/he_query.py and the release spec's
    # columns (cloakroom_client/protocol/he_plan/columns.py) test ``category is None``, and migration 0003
    # made the column nullable.
    category = models.CharField(  # noqa: DJ001 (None means "not an indicator column"; code tests for it)
        max_length=200, null=True, blank=True, help_text="the category an HE indicator column is 1 for"
    )

    class Meta:
        ordering = ["dataset", "position"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "name"], name="column_name_unique_per_dataset"),
            models.CheckConstraint(
                condition=~Q(kind="numeric")
                | (Q(lower__isnull=False) & Q(upper__isnull=False) & Q(lower__lt=F("upper"))),
                name="numeric_column_has_bounds",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class Purchase(models.Model):
    """One buyer's allotment of a dataset's epsilon. What has been spent is derived from the ledger."""

    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="purchases")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="purchases")
    epsilon = models.DecimalField(max_digits=12, decimal_places=EPSILON_PLACES)
    # The purchase's share of the dataset's delta cap, in proportion to its share of epsilon.
    delta = models.DecimalField(max_digits=16, decimal_places=DELTA_PLACES, default=Decimal("0"))
    price = models.DecimalField(max_digits=18, decimal_places=CREDIT_PLACES)
    # The largest rho whose zCDP guarantee is within (epsilon, delta); 0 when delta is 0.
    rho_cap = rho_field("largest zCDP rho within the allotment")
    # Budget held or committed by jobs (reserve minus refund, in ledger terms): epsilon and delta add up
    # (basic composition), rho adds up (zCDP). Only ever moved under the purchase's row lock, and the
    # constraint below keeps the purchase within its allotment by one composition or the other.
    epsilon_used = models.DecimalField(max_digits=20, decimal_places=EPSILON_PLACES, default=Decimal("0"))
    delta_used = models.DecimalField(max_digits=18, decimal_places=DELTA_PLACES, default=Decimal("0"))
    rho_used = rho_field("zCDP rho held or spent by the purchase's jobs")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(epsilon__gt=0), name="purchase_epsilon_positive"),
            models.CheckConstraint(condition=Q(price__gte=0), name="purchase_price_not_negative"),
            models.CheckConstraint(
                condition=Q(epsilon_used__gte=0) & Q(delta_used__gte=0) & Q(rho_used__gte=0),
                name="purchase_used_not_negative",
            ),
            # Within the allotment by basic composition, or by zCDP (compute/engines/accounting.py).
            models.CheckConstraint(
                condition=(Q(epsilon_used__lte=F("epsilon")) & Q(delta_used__lte=F("delta")))
                | Q(rho_used__lte=F("rho_cap")),
                name="purchase_never_overspent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.buyer} · {self.dataset} · ε {self.epsilon}"

    def save(self, *args, **kwargs) -> None:
        self.rho_cap = accounting.rho_allowance(Decimal(self.epsilon), Decimal(self.delta))
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "rho_cap"}
        super().save(*args, **kwargs)


class LedgerEntry(AppendOnlyModel):
    """The append-only privacy ledger: every reservation, commit and refund of budget."""

    class Kind(models.TextChoices):
        RESERVE = "reserve", "reserve"
        COMMIT = "commit", "commit"
        REFUND = "refund", "refund"

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="ledger_entries")
    # Null for a job charged to a dataset without a purchase: a PATE job charges every member dataset of
    # its ensemble (one row per dataset), and the buyer pays per label instead (docs/PATE.md).
    purchase = models.ForeignKey(
        Purchase, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    # The job that caused the entry; jobs arrive with the compute app's job model.
    job_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    epsilon = models.DecimalField(max_digits=12, decimal_places=EPSILON_PLACES)
    delta = models.DecimalField(max_digits=16, decimal_places=DELTA_PLACES, default=Decimal("0"))
    rho = rho_field("the job's zCDP rho")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.CheckConstraint(condition=Q(epsilon__gte=0), name="ledger_epsilon_not_negative"),
            models.CheckConstraint(condition=Q(delta__gte=0), name="ledger_delta_not_negative"),
            models.CheckConstraint(condition=Q(rho__gte=0), name="ledger_rho_not_negative"),
        ]

    def __str__(self) -> str:
        where = f"purchase {self.purchase_id}" if self.purchase_id else f"dataset {self.dataset_id}"
        return f"{self.kind} ε {self.epsilon} ({where})"


class Ensemble(models.Model):
    """A PATE listing: owners' DP datasets with one feature schema and one categorical label, whose
    teachers label a buyer's rows by noisy vote (docs/PATE.md).

    ``features`` and ``label`` are the declared columns (name, kind, bounds, categories) copied from
    the founding dataset; every member's declaration must equal them. Membership is in
    :class:`EnsembleMember`, with the times a dataset joined and left, so a job uses the members of
    the moment it was submitted.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ensembles")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    price_per_label = models.DecimalField(max_digits=14, decimal_places=CREDIT_PLACES)
    features = models.JSONField(help_text="the declared feature columns every member shares")
    label = models.JSONField(help_text="the declared label column (categorical or boolean) every member shares")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(price_per_label__gte=0), name="ensemble_price_not_negative"),
        ]

    def __str__(self) -> str:
        return self.title


class EnsembleMember(models.Model):
    """One dataset's consent to be a teacher's data in an ensemble, from ``joined_at`` until ``left_at``."""

    ensemble = models.ForeignKey(Ensemble, on_delete=models.CASCADE, related_name="members")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="ensemble_memberships")
    joined_at = models.DateTimeField(auto_now_add=True)
    left_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["ensemble", "joined_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["ensemble", "dataset"],
                condition=Q(left_at__isnull=True),
                name="ensemble_member_once_at_a_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dataset} in {self.ensemble}"
