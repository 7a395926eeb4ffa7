"""The PATE job form of an ensemble's page (docs/PATE.md), with its live estimate (an htmx fragment that
answers 200 with the problem drawn in it, as the training form's does) and its submission, which creates
the ``pate`` job through the same service as ``POST /api/v1/ensembles/{id}/jobs/``
(compute/pate_services.py). The ensemble page itself is the marketplace's; the ``pate_section`` tag draws
this form on it."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.models import User
from compute import pate_services
from compute.forms.pate import MODEL_NAMES, PateForm
from compute.pate_estimate import pate_estimate
from compute.views.common import form_errors
from config.exceptions import ServiceError
from marketplace.ensembles.views import ensemble_detail_context, visible_ensemble
from marketplace.models import Ensemble


def _estimate(user: User, ensemble: Ensemble, form: PateForm) -> dict[str, Any]:
    """The live estimate for a bound form; problems are listed, never raised. Spends nothing."""
    if not form.is_valid():
        return {"errors": form_errors(form)}
    try:
        est = pate_estimate(user=user, ensemble=ensemble, spec=form.spec_body())
    except ServiceError as exc:
        form.attach(exc)
        return {"errors": form_errors(form)}
    return {"estimate": est, "teacher_model": MODEL_NAMES.get(est.spec.teacher_model, est.spec.teacher_model)}


def pate_context(
    *, user: User, ensemble: Ensemble, data: QueryDict | None = None, files: Any = None, validate: bool = False
) -> dict[str, Any]:
    """The job form's panel: ``form`` and ``estimate`` for a buyer; for anyone else only what they may do.

    With no ``data`` the form starts empty (every default); with ``validate`` True the caller validates
    the form and attaches errors, and the estimate is drawn from what was posted."""
    panel: dict[str, Any] = {"ensemble": ensemble, "buyer": bool(user.is_authenticated and user.is_buyer)}
    if not panel["buyer"]:
        return panel
    if data is None:
        form = PateForm()
        estimate = _estimate(user, ensemble, PateForm(QueryDict()))
    else:
        form = PateForm(data, files)
        estimate = _estimate(user, ensemble, PateForm(data)) if validate else _estimate(user, ensemble, form)
    panel.update(form=form, estimate=estimate)
    return panel


def _page(request: HttpRequest, ensemble: Ensemble, panel: dict[str, Any], status: int = 200) -> HttpResponse:
    context = {**ensemble_detail_context(request, ensemble), "pate_panel": panel}
    return render(request, "marketplace/ensembles/detail.html", context, status=status)


@login_required
@require_POST
def pate_estimate_fragment(request: HttpRequest, ensemble_id: int) -> HttpResponse:
    """The estimate panel for the form's current values (htmx; the file is not sent). Spends nothing."""
    ensemble = visible_ensemble(ensemble_id)
    panel = pate_context(user=request.user, ensemble=ensemble, data=request.POST)
    return render(request, "compute/_pate_estimate.html", {"estimate": panel.get("estimate"), "pate": panel})


@login_required
@require_POST
def pate_submit(request: HttpRequest, ensemble_id: int) -> HttpResponse:
    """Submit the job form: the service checks the table and spec, reserves every member's budget, holds
    the credits and queues the job, as for the API; then the job's page. Without JavaScript, "Update the
    estimate" comes here and only redraws."""
    ensemble = visible_ensemble(ensemble_id)
    if request.POST.get("refresh"):
        return _page(request, ensemble, pate_context(user=request.user, ensemble=ensemble, data=request.POST))
    panel = pate_context(user=request.user, ensemble=ensemble, data=request.POST, files=request.FILES, validate=True)
    if not panel["buyer"]:
        messages.error(request, "Only accounts with the buyer role can label rows with an ensemble.")
        return redirect("ensemble-detail", ensemble_id=ensemble.pk)
    form: PateForm = panel["form"]
    status = 400
    if form.is_valid():
        key = form.idempotency_key()
        try:
            job, created = pate_services.pate_submit(
                buyer=request.user,
                ensemble_id=ensemble.pk,
                upload=request.FILES.get("file"),
                spec=form.spec_body(),
                idempotency_key=key,
            )
        except ServiceError as exc:
            form.attach(exc)
            status = exc.status_code if exc.status_code != 404 else 400
        else:
            if created:
                messages.success(
                    request,
                    f"Job {job.pk} is queued: ε {job.epsilon.normalize():f} is reserved on each of the ensemble's "
                    f"{len(job.spec['members'])} member datasets.",
                )
            else:
                messages.info(request, "This form was already submitted; here is the job it made.")
            return redirect("job-detail", job_id=job.pk)
    return _page(request, ensemble, panel, status=status)
