"""A PATE job as its page shows it (docs/PATE.md): what was asked (teachers, noise, rows), the members it
was submitted to and charged, and once released the labels (a page of them at a time), the counts
answered and asked, each member's charge (the receipt) and the payment."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator

from compute import presentation
from compute.forms.pate import MODEL_NAMES
from compute.models import Job
from marketplace.models import Dataset

LABELS_PAGE_SIZE = 50


def describe_pate(spec: dict[str, Any]) -> str:
    """One line: "labels for up to 30 of 40 rows by 15 logistic-regression teachers, threshold 8, σ₁ 20, σ₂ 10"."""
    pate = spec.get("pate") or {}
    model = MODEL_NAMES.get(pate.get("teacher_model"), pate.get("teacher_model") or "")
    return (
        f"labels for up to {spec.get('max_queries')} of {spec.get('rows')} rows by {pate.get('teachers')} "
        f"{model} teachers, threshold {presentation.fmt(pate.get('threshold'))}, "
        f"σ₁ {presentation.fmt(pate.get('sigma1'))}, σ₂ {presentation.fmt(pate.get('sigma2'))}"
    )


def _after(bound: dict[str, Any] | None) -> dict[str, str] | None:
    """A member dataset's guarantee after the job (all its buyers), in parts that the table keeps whole."""
    if not bound:
        return None
    delta = bound.get("delta") or 0
    return {
        "epsilon": presentation.fmt(float(bound["epsilon"])),
        "delta": f"{delta:g}" if delta else "0",
        "composition": str(bound.get("composition", "")),
        "share": f"{float(bound['share_used']):.1%}",
    }


def pate_view(job: Job, labels_page: Any = None) -> dict[str, Any]:
    spec = job.spec or {}
    ids = list(spec.get("members") or [])
    datasets = Dataset.objects.filter(pk__in=ids).select_related("owner").in_bulk()
    result = job.result or {}
    released = job.status == Job.Status.RELEASED and bool(result)
    privacy = result.get("privacy") or {}
    charged = {m["dataset"]: m for m in privacy.get("members") or []}
    members = []
    for pk in ids:
        dataset = datasets.get(pk)
        charge = charged.get(pk)
        members.append(
            {
                "id": pk,
                "title": dataset.title if dataset else f"dataset {pk}",
                "owner": dataset.owner.username if dataset else "",
                "charge": charge,
                "after": _after((charge or {}).get("dataset_after")),
            }
        )
    view: dict[str, Any] = {
        "ensemble": job.ensemble,
        "members": members,
        "rows": spec.get("rows"),
        "max_queries": spec.get("max_queries"),
        "price_per_label": spec.get("price_per_label"),
        "released": released,
    }
    if released:
        labels = list(enumerate(result.get("labels") or [], start=1))
        page_obj = Paginator(labels, LABELS_PAGE_SIZE).get_page(labels_page)
        view.update(
            answered=result.get("answered"),
            asked=result.get("asked"),
            epsilon=result.get("epsilon"),
            delta=result.get("delta"),
            epsilon_text=presentation.fmt(result.get("epsilon")),
            mechanism=result.get("mechanism"),
            neighbouring=result.get("neighbouring"),
            rho=privacy.get("rho"),
            rho_reserved=privacy.get("rho_reserved"),
            payment=result.get("payment") or {},
            labels_page=page_obj,
            label_rows=page_obj.object_list,
            total_rows=len(labels),
        )
    return view
