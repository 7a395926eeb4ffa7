"""Seed the demo's PATE ensemble (docs/PATE.md): three owners' parts of the breast-cancer table joined
into one ensemble, and a hospital's unlabelled tumours labelled by its teachers, so that ``make demo``
shows issue 16's founding example working: labels from several owners' private data.

scikit-learn's copy of the Wisconsin table (569 tumours) is dealt by a public permutation
(:func:`deal_order`, from :data:`SPLIT_SEED`): its first :data:`BUYER_ROWS` rows are the table of demo-hospital (a buyer made
here, so that demo-buyer's wallet in the rest of the tour stays as it was), without the diagnosis
(clipped to the declared bounds; a copy is ``docs/examples/tumours-unlabelled.csv``, for README.md's
tour), and the rest goes to three
clinics (:data:`CLINIC_ROWS` rows), each an owner account made here (demo-clinic-a, -b and -c: three
owners of their own, so that demo-owner's datasets and earnings in the rest of the tour stay as they
were). So none of the buyer's rows is in any member's data. Each part is uploaded through
``marketplace.services.dataset_create`` with the breast-cancer table's declared columns (seed_demo's
constants: the bounds are never read off the rows), published with its row count public (the teachers
are spread in proportion to those counts), and joined to the ensemble through
``marketplace.ensembles.services``, as owners do through the API.

The job goes through the real code path: ``compute.pate_services.pate_submit`` (the upload checks, the
reservation on every member, the hold on demo-hospital's wallet), then ``compute.services.job_run`` here
and now (the ``pate`` kind: teachers, Confident-GNMax, the student, the release, each member's commit
and the payment in one transaction), as seed_demo_model does for the model. :data:`SPEC` is small (50
teachers of about 10 rows, 69 queries) so that it runs in a second or two.

Running it again is safe: accounts, datasets, the ensemble and a released or open job are found and used;
nothing is uploaded, charged or paid twice. seed_demo runs this command last.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.models import CreditEntry, User
from accounts.selectors import wallet_balance
from accounts.services import user_signup, wallet_change
from compute import services
from compute.models import Job
from compute.pate_services import pate_submit
from config.exceptions import ServiceError
from marketplace.ensembles import services as ensembles
from marketplace.management.commands.seed_demo import (
    BREAST_CANCER_COLUMNS,
    DEMO_BUYER_CREDITS,
    DEMO_OWNER,
    breast_cancer_frame,
    csv_upload,
    new_password,
)
from marketplace.management.demo import shown_path
from marketplace.models import Dataset, Ensemble, EnsembleMember
from marketplace.services import DatasetInput, dataset_create, dataset_publish

OWNERS = ("demo-clinic-a", "demo-clinic-b", "demo-clinic-c")
BUYER = "demo-hospital"
CLINICS = ("A", "B", "C")
SPLIT_SEED = 16  # public: which tumours are the buyer's, which each clinic's (deal_order)
BUYER_ROWS = 69
CLINIC_ROWS = (200, 150, 150)  # 569 - 69, dealt in this order
ENSEMBLE_TITLE = "Breast cancer: three clinics (PATE)"
ENSEMBLE_DESCRIPTION = (
    "Three clinics' diagnosed tumours (parts of the Wisconsin breast-cancer table): 50 teachers vote on "
    "your tumours, and only a noisy majority diagnosis leaves."
)
PRICE_PER_LABEL = Decimal("0.05")
EPSILON_CAP = Decimal("10")
DELTA_CAP = Decimal("0.00001")
PRICE_PER_EPSILON = Decimal("20.00")
# 50 teachers (20, 15 and 15 by the clinics' public row counts, about 10 rows each), the threshold at 0.6
# of them, every row of the buyer's table asked, and a student trained on the answered labels. Reserved:
# 69 x (1/(2 x 20^2) + 1/15^2) = rho 0.393, epsilon 4.1 at delta 1e-5 on each member (whose cap, 10, holds
# four such jobs); about 50 answered, committed about 3.6. Chosen once, while writing the demo, by running
# a few settings on scikit-learn's public copy of the table: about 85% of the answered labels are right.
SPEC: dict[str, Any] = {"teachers": 50, "threshold": 30, "sigma1": 20, "sigma2": 15, "student": True}
UNLABELLED_ROWS = "docs/examples/tumours-unlabelled.csv"
RELEASE_WAIT_SECONDS = 120
OPEN = (Job.Status.QUEUED, Job.Status.RUNNING)
DONE_WITHOUT_CHARGE = (Job.Status.FAILED, Job.Status.CANCELLED)


def clinic_title(clinic: str) -> str:
    return f"Clinic {clinic}: diagnosed breast tumours"


def deal_order(n: int) -> list[int]:
    """A public permutation of the rows 0..n-1: sorted by a hash of the seed and the row's number (no
    random draw: the order is a constant anyone can recompute)."""
    return sorted(range(n), key=lambda i: hashlib.blake2b(f"{SPLIT_SEED}:{i}".encode(), digest_size=8).digest())


def split_frames() -> tuple[Any, list[Any]]:
    """The buyer's unlabelled table and the three clinics' labelled parts (:func:`deal_order`), the
    buyer's clipped to the declared bounds."""
    frame = breast_cancer_frame()
    order = deal_order(len(frame))
    assert BUYER_ROWS + sum(CLINIC_ROWS) == len(frame), "the parts must hold every row of the table"
    parts, start = [], 0
    for size in (BUYER_ROWS, *CLINIC_ROWS):
        parts.append(frame.iloc[order[start : start + size]].reset_index(drop=True))
        start += size
    buyer, *clinics = parts
    buyer = buyer.drop(columns=["diagnosis"])
    # A PATE job's table must lie within the declared bounds (its upload check clips nothing), so the buyer
    # clips its own rows first, as the members' datasets were clipped (worst_area to 2500).
    for column in BREAST_CANCER_COLUMNS:
        if column["kind"] == "numeric":
            buyer[column["name"]] = buyer[column["name"]].clip(column["lower"], column["upper"])
    return buyer, clinics


class Command(BaseCommand):
    help = (
        "Split the breast-cancer table between three demo owners, join their datasets into a PATE ensemble and "
        "label demo-hospital's unlabelled tumours with it. Safe to re-run."
    )

    def handle(self, *args, **options) -> None:
        if not User.objects.filter(username=DEMO_OWNER).exists():
            raise CommandError(f"There is no {DEMO_OWNER} account; run seed_demo first.")
        passwords = []
        owners = []
        for username in OWNERS:
            owner, password = self._account(username, "owner")
            owners.append(owner)
            if password is not None:
                passwords.append((username, "data owner (PATE clinic)", password))
        buyer, password = self._account(BUYER, "buyer")
        if password is not None:
            passwords.append((BUYER, "buyer, unlabelled rows", password))
            missing = DEMO_BUYER_CREDITS - wallet_balance(user=buyer)
            if missing > 0:
                wallet_change(user=buyer, amount=missing, kind=CreditEntry.Kind.ADJUSTMENT, memo="demo credits")
        frames: tuple[Any, list[Any]] | None = None
        datasets = []
        for k, (owner, clinic) in enumerate(zip(owners, CLINICS, strict=True)):
            dataset = Dataset.objects.filter(owner=owner, title=clinic_title(clinic), mode=Dataset.Mode.DP).first()
            if dataset is None:
                frames = frames or split_frames()
                dataset = self._upload(owner, clinic, frames[1][k])
            if dataset.status == Dataset.Status.DRAFT:
                dataset = dataset_publish(owner=owner, dataset_id=dataset.pk)
            datasets.append(dataset)
        try:
            ensemble = self._ensemble(owners, datasets)
            job = self._labelled(buyer, ensemble, frames)
        except ServiceError as exc:
            raise CommandError(f"The demo ensemble could not be made: {exc}") from None
        self._summary(passwords, ensemble, datasets, job)

    @staticmethod
    def _account(username: str, role: str) -> tuple[User, str | None]:
        """The user and its new password, or the existing user and None (password untouched)."""
        user = User.objects.filter(username=username).first()
        if user is not None:
            return user, None
        password = new_password()
        try:
            user = user_signup(username=username, email=f"{username}@example.org", password=password, roles=[role])
        except ServiceError as exc:
            raise CommandError(f"Could not create {username}: {exc}") from None
        return user, password

    def _upload(self, owner: User, clinic: str, frame: Any) -> Dataset:
        data = DatasetInput(
            title=clinic_title(clinic),
            description=(
                f"Clinic {clinic}'s diagnosed tumours: {len(frame)} rows of the Wisconsin breast-cancer table (as "
                "shipped with scikit-learn), with the same 12 features and declared bounds as the whole table. "
                f"A member of the PATE ensemble {ENSEMBLE_TITLE!r}."
            ),
            mode=Dataset.Mode.DP,
            epsilon_cap=EPSILON_CAP,
            delta_cap=DELTA_CAP,
            price_per_epsilon=PRICE_PER_EPSILON,
            row_count_public=True,
            clip_to_bounds=True,
            columns=BREAST_CANCER_COLUMNS,
        )
        try:
            dataset = dataset_create(owner=owner, data=data, upload=csv_upload(frame, f"clinic-{clinic.lower()}.csv"))
        except ServiceError as exc:
            raise CommandError(f"The demo dataset {data.title!r} was rejected: {exc}") from None
        self.stdout.write(f"Uploaded {data.title!r}: {dataset.row_count} rows.")
        return dataset

    def _ensemble(self, owners: list[User], datasets: list[Dataset]) -> Ensemble:
        """The ensemble, founded by clinic A's owner; each other clinic joins with its own dataset."""
        ensemble = Ensemble.objects.filter(owner=owners[0], title=ENSEMBLE_TITLE).first()
        if ensemble is None:
            ensemble = ensembles.ensemble_create(
                owner=owners[0],
                title=ENSEMBLE_TITLE,
                description=ENSEMBLE_DESCRIPTION,
                dataset_id=datasets[0].pk,
                price_per_label=PRICE_PER_LABEL,
            )
            self.stdout.write(f"Created the ensemble {ENSEMBLE_TITLE!r}.")
        for owner, dataset in zip(owners, datasets, strict=True):
            if not EnsembleMember.objects.filter(ensemble=ensemble, dataset=dataset, left_at__isnull=True).exists():
                ensembles.ensemble_join(owner=owner, ensemble_id=ensemble.pk, dataset_id=dataset.pk)
        return ensemble

    def _labelled(self, buyer: User, ensemble: Ensemble, frames: tuple[Any, list[Any]] | None) -> Job:
        """demo-hospital's released PATE job on the ensemble: found (the first), or submitted and run here."""
        job = (
            Job.objects.filter(buyer=buyer, kind=Job.Kind.PATE, ensemble=ensemble)
            .exclude(status__in=DONE_WITHOUT_CHARGE)
            .order_by("created_at", "id")
            .first()
        )
        if job is None:
            unlabelled = (frames or split_frames())[0]
            job, _ = pate_submit(
                buyer=buyer, ensemble_id=ensemble.pk, upload=csv_upload(unlabelled, "tumours.csv"), spec=SPEC
            )
        if job.status in OPEN:
            services.job_run(job_id=job.pk)  # "skipped" when a running demo's worker has it: waited for below
            deadline = time.monotonic() + RELEASE_WAIT_SECONDS
            job.refresh_from_db()
            while job.status in OPEN and time.monotonic() < deadline:
                time.sleep(0.5)
                job.refresh_from_db()
        if job.status != Job.Status.RELEASED:
            raise CommandError(f"The demo's PATE job #{job.pk} is {job.status}: {job.error or 'no reason'}")
        return job

    def _summary(self, passwords: list, ensemble: Ensemble, datasets: list[Dataset], job: Job) -> None:
        out = self.stdout
        out.write("")
        if passwords:
            out.write(
                self.style.SUCCESS("PATE demo accounts created. Passwords are shown ONCE here and stored nowhere else:")
            )
            for username, role, password in passwords:
                out.write(f"  {username:<13} {role:<24} password: {password}")
        out.write("Demo ensemble (PATE), labels from three owners:")
        out.write(
            f"  #{ensemble.pk:<3} {ensemble.title}: diagnosis from 12 features, {ensemble.price_per_label} credits per label"
        )
        for dataset in datasets:
            out.write(
                f"       member #{dataset.pk:<3} {dataset.title:<36} {dataset.owner.username:<13} rows {dataset.row_count}"
            )
        result = job.result or {}
        student = result.get("student")
        out.write(
            f"  Job #{job.pk} labelled {result.get('answered')} of {BUYER}'s {result.get('asked')} tumours, "
            f"epsilon {result.get('epsilon'):.2f} (delta {result.get('delta'):g}) charged to each member"
            + (f"; student trained on {student['trained_on']} labels" if student else "")
        )
        sample = shown_path(Path(settings.BASE_DIR) / UNLABELLED_ROWS)
        spec = shlex.quote(json.dumps({k: v for k, v in SPEC.items() if k != "student"}))
        out.write(
            f"  Try it: cloakroom pate {ensemble.pk} {sample} --spec {spec} --out labels.csv --student student.json"
        )
