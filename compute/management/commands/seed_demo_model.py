"""Seed the demo's model: a DP logistic regression on the breast-cancer table, published for encrypted
inference, so that ``make demo`` then ``cloakroom predict`` works out of the box (README.md's tour).

It is made the way a person makes one, through the same services as the API: demo-modeller (a buyer,
created by seed_demo) buys epsilon 3 of the breast-cancer table, submits a ``train`` job on that
purchase (``compute.services.job_submit``: checked against the declaration, reserved on the purchase
and the dataset), the job runs here and now through its kind (``compute.services.job_run``: the train
kind's engine, then the release and the ledger's commit in one transaction, charged once), and the
released model is published at a price per prediction (``compute.inference.services.listing_publish``).
Running the job in this process keeps ``make demo`` from waiting on a worker that is not started yet;
the task that ``job_submit`` sent finds the job released and does nothing.

The three features (mean texture, worst area, mean concave points: a nucleus's texture, size and
shape) and epsilon 3 are constants, never chosen from the rows at seeding time; the bounds are the
table's declared ones (seed_demo). They were picked once, while writing the demo, by comparing a few
feature sets on scikit-learn's public copy of the table (which a real buyer of private data could not
do): fewer columns mean fewer noisy statistics, so a usable model at a small epsilon. seed_demo runs this command last (marketplace sits below compute
and cannot import it). Running it again is safe: a published demo model, or a released or open demo
job, is found and used, and nothing is bought or charged twice.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from compute import services
from compute.inference.services import listing_publish
from compute.models import Job, ModelListing
from config.exceptions import ServiceError
from marketplace.management.commands.seed_demo import DEMO_DATASETS, DEMO_MODELLER, DEMO_OWNER
from marketplace.management.demo import shown_path
from marketplace.models import Dataset, Purchase
from marketplace.services import purchase_create

MODEL_TITLE = "Breast cancer: malignant or benign (DP logistic regression)"
MODEL_DATASET_TITLE = DEMO_DATASETS[0].title  # the breast-cancer table
MODEL = {
    "type": "logistic_regression",
    "features": ["mean_texture", "worst_area", "mean_concave_points"],
    "label": "diagnosis",
}  # the type's default hyper-parameters, whatever they become
MODEL_EPSILON = Decimal("3")
PRICE_PER_PREDICTION = Decimal("0.01")
# Ten tumours of the table (its first five malignant and first five benign), for README.md's tour.
SAMPLE_ROWS = "docs/examples/tumours.csv"
# A job a running demo's worker took first is waited for this long (seconds) before giving up.
RELEASE_WAIT_SECONDS = 120
OPEN = (Job.Status.QUEUED, Job.Status.RUNNING)
DONE_WITHOUT_CHARGE = (Job.Status.FAILED, Job.Status.CANCELLED)


class Command(BaseCommand):
    help = (
        "Train the demo's DP logistic regression on the breast-cancer table (as demo-modeller) and publish it "
        "for encrypted inference. Safe to re-run."
    )

    def handle(self, *args, **options) -> None:
        modeller = User.objects.filter(username=DEMO_MODELLER).first()
        if modeller is None:
            raise CommandError(f"There is no {DEMO_MODELLER} account; run seed_demo first.")
        listing = ModelListing.objects.filter(owner=modeller, title=MODEL_TITLE).select_related("job", "owner").first()
        if listing is None:
            try:
                job = self._released_job(modeller)
                listing = listing_publish(
                    user=modeller, job_id=job.pk, title=MODEL_TITLE, price_per_prediction=PRICE_PER_PREDICTION
                )
            except ServiceError as exc:
                raise CommandError(f"The demo model could not be made: {exc}") from None
            self.stdout.write(f"Trained and published the demo model {MODEL_TITLE!r}.")
        self._summary(listing)

    def _released_job(self, modeller: User) -> Job:
        """The demo's released train job: found, or bought, submitted and run here."""
        job = (
            Job.objects.filter(buyer=modeller, kind=Job.Kind.TRAIN, dataset__title=MODEL_DATASET_TITLE)
            .exclude(status__in=DONE_WITHOUT_CHARGE)
            .order_by("-created_at")
            .first()
        )
        if job is None:
            purchase = self._purchase(modeller)
            job, _ = services.job_submit(
                buyer=modeller, purchase_id=purchase.pk, kind=Job.Kind.TRAIN, query=MODEL, epsilon=MODEL_EPSILON
            )
        if job.status in OPEN:
            services.job_run(job_id=job.pk)  # "skipped" when a running demo's worker has it: waited for below
            deadline = time.monotonic() + RELEASE_WAIT_SECONDS
            job.refresh_from_db()
            while job.status in OPEN and time.monotonic() < deadline:
                time.sleep(0.5)
                job.refresh_from_db()
        if job.status != Job.Status.RELEASED:
            raise CommandError(f"The demo model's training job #{job.pk} is {job.status}: {job.error or 'no reason'}")
        return job

    @staticmethod
    def _purchase(modeller: User) -> Purchase:
        """demo-modeller's allotment of the breast-cancer table with epsilon left for the model; bought
        when there is none (the price goes to demo-owner, through the credit ledger)."""
        dataset = Dataset.objects.filter(owner__username=DEMO_OWNER, title=MODEL_DATASET_TITLE).first()
        if dataset is None:
            raise CommandError(f"The demo dataset {MODEL_DATASET_TITLE!r} is missing; run seed_demo first.")
        for purchase in Purchase.objects.filter(buyer=modeller, dataset=dataset, epsilon__gte=MODEL_EPSILON):
            # A failed or cancelled job was refunded: its allotment is whole again.
            if not Job.objects.filter(purchase=purchase).exclude(status__in=DONE_WITHOUT_CHARGE).exists():
                return purchase
        return purchase_create(buyer=modeller, dataset_id=dataset.pk, epsilon=MODEL_EPSILON)

    def _summary(self, listing: ModelListing) -> None:
        job, model = listing.job, listing.model
        sample = shown_path(Path(settings.BASE_DIR) / SAMPLE_ROWS)
        out = self.stdout
        out.write("")
        out.write("Demo model, published for encrypted inference:")
        out.write(f"  #{listing.pk:<3} {listing.title}")
        out.write(
            f"       {model['type']} of {model['label']} on {', '.join(model['features'])}, "
            f"epsilon {job.epsilon.normalize():f}; {listing.price_per_prediction} credits per prediction; "
            f"trained by {listing.owner.username} (job #{job.pk})"
        )
        out.write(f"  Try it: cloakroom predict {listing.pk} {sample} --out scores.csv")
