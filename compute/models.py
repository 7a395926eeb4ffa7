from django.db import models


class WorkerHeartbeat(models.Model):
    """A token a worker has processed: proof, for health checks, that the broker and a worker work."""

    token = models.CharField(max_length=64, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.token} at {self.seen_at:%Y-%m-%d %H:%M:%S}"


class Job(models.Model):
    """One computation a buyer asked for, with its budget reservation and, once released, its result.

    Status moves queued -> running -> released, or to failed / cancelled (both refund the
    reservation). ``claim`` is a fresh token each time a worker takes the job: only the holder of
    the current claim can release it, so a task delivered twice cannot release or charge twice. A
    running job whose worker died goes back to queued (compute.services.jobs_sweep).
    """

    class Kind(models.TextChoices):
        # A query on a DP dataset runs on the dp queue; on an HE dataset, on the he queue.
        QUERY = "query", "query"
        # DP model training on a DP dataset (compute/kinds/train.py), on the dp queue.
        TRAIN = "train", "train"
        # PATE labels for a buyer's rows from an ensemble's datasets (compute/kinds/pate.py), on the ml queue.
        PATE = "pate", "pate"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        AWAITING_KEY = "awaiting_key", "awaiting key"
        RELEASED = "released", "released"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    OPEN_STATUSES = (Status.QUEUED, Status.RUNNING, Status.AWAITING_KEY)

    buyer = models.ForeignKey("accounts.User", on_delete=models.PROTECT, related_name="jobs")
    dataset = models.ForeignKey("marketplace.Dataset", on_delete=models.PROTECT, related_name="jobs")
    # A PATE job has no purchase: it is charged to every member dataset of its ``ensemble`` (one ledger
    # row each) and paid per answered label; ``dataset`` is then the ensemble's first member at submission.
    purchase = models.ForeignKey(
        "marketplace.Purchase", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    ensemble = models.ForeignKey(
        "marketplace.Ensemble", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    # PATE: the buyer's unlabelled rows, checked against the ensemble's features and stored encrypted in the
    # private storage root (no URL serves it); removed once the job is released, failed or cancelled.
    input_path = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.QUERY)
    spec = models.JSONField(help_text="the validated query, in canonical form")
    spec_hash = models.CharField(
        max_length=64, db_index=True, help_text="hash of spec, epsilon, delta and dataset version"
    )
    epsilon = models.DecimalField(max_digits=12, decimal_places=6)
    delta = models.DecimalField(max_digits=16, decimal_places=12, default=0)
    # The job's privacy loss under zCDP (compute/engines/accounting.py), rounded up; reserved with it.
    rho = models.DecimalField(max_digits=24, decimal_places=12, default=0)
    dataset_version = models.PositiveIntegerField()
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.QUEUED, db_index=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    # Null, not "", when absent: the unique constraint below holds only among keys a client gave.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    reused_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="reuses")
    claim = models.CharField(max_length=32, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Deliveries (docs/RELIABILITY.md): how many times the job's task was sent to the broker, and when
    # last. A job submitted while the broker was down has none yet; the sweeper sends it, and fails and
    # refunds a queued job after CLOAKROOM_JOB_MAX_DELIVERIES sends that no worker started.
    sends = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    # DP jobs: the running task's heartbeat, every CLOAKROOM_JOB_HEARTBEAT_SECONDS; once it stops the
    # sweeper re-queues the job without waiting for the lease. Null for HE jobs (the lease alone).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # HE jobs: when the encrypted aggregate was stored and the job began to wait for the key holder.
    computed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Work done and to do (HE jobs: ciphertext chunks), for progress reports.
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["buyer", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="job_idempotency_key_unique_per_buyer",
            ),
            models.CheckConstraint(condition=models.Q(epsilon__gte=0), name="job_epsilon_not_negative"),
            models.CheckConstraint(condition=models.Q(delta__gte=0), name="job_delta_not_negative"),
            models.CheckConstraint(condition=models.Q(rho__gte=0), name="job_rho_not_negative"),
            # Every job is charged somewhere: to a purchase, or (PATE) to the member datasets of an ensemble.
            models.CheckConstraint(
                condition=models.Q(purchase__isnull=False) | models.Q(ensemble__isnull=False),
                name="job_has_purchase_or_ensemble",
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.status})"


class JobPart(models.Model):
    """One share of an HE job's chunks, computed by whichever worker process takes it.

    Parts belong to one claim of the job: when the sweeper re-queues a job, its new claim gets new
    parts and the old ones are ignored. A part is done once (``done_at`` set by a conditional
    UPDATE); the worker that completes the last part combines the partial aggregates.
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="parts")
    claim = models.CharField(max_length=32)
    index = models.PositiveIntegerField()
    chunk_start = models.PositiveIntegerField()
    chunk_end = models.PositiveIntegerField()
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "claim", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "claim", "index"], name="job_part_unique"),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} part {self.index} [{self.chunk_start}, {self.chunk_end})"


class ModelListing(models.Model):
    """A released, DP-trained linear model published for encrypted inference at a price per prediction.

    ``model`` is a copy of the train job's released ``result.model``; its coefficients never leave the
    server (the listing shows the encoding a client needs, not the parameters). Only DP-trained models
    can be listed, because exact scores of a model let a client recover it in ``d + 1`` queries: what a
    client can steal is then a DP release already (docs/MODELS.md).
    """

    job = models.OneToOneField(Job, on_delete=models.PROTECT, related_name="listing")
    owner = models.ForeignKey("accounts.User", on_delete=models.PROTECT, related_name="model_listings")
    title = models.CharField(max_length=200)
    price_per_prediction = models.DecimalField(max_digits=18, decimal_places=2)
    model = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(price_per_prediction__gte=0), name="listing_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"model listing {self.pk} ({self.title})"


class Prediction(models.Model):
    """One request of encrypted predictions: a client's ciphertexts scored on the ``he`` queue.

    Status moves queued -> running -> ready -> delivered, or to failed (the client refunded) or expired
    (scores never fetched). The client's wallet is debited on submission; the publisher is credited
    when the scores are ready, in the same transaction. The platform stores only the client's public
    context and ciphertexts (private storage root, ``predictions/<id>/``), deleted once the scores are
    downloaded, on failure or on expiry; the rows and the scores never exist in the clear on the server.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        READY = "ready", "ready"
        DELIVERED = "delivered", "delivered"
        FAILED = "failed", "failed"
        EXPIRED = "expired", "expired"

    listing = models.ForeignKey(ModelListing, on_delete=models.PROTECT, related_name="predictions")
    client = models.ForeignKey("accounts.User", on_delete=models.PROTECT, related_name="predictions")
    rows = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=18, decimal_places=2)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(price__gte=0), name="prediction_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"prediction {self.pk} ({self.status})"
