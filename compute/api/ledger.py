"""API v1 for budgets: a purchase's ledger (for its buyer) and a dataset's budget by buyer (for its owner)."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from drf_spectacular.utils import extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import CREDIT_QUANTUM
from compute import selectors
from config import openapi
from marketplace import selectors as market
from marketplace.models import DELTA_QUANTUM, EPSILON_QUANTUM, RHO_QUANTUM, LedgerEntry


def _eps(value) -> str:
    return f"{Decimal(value or 0).quantize(EPSILON_QUANTUM):f}"


def _delta(value) -> str:
    return f"{Decimal(value or 0).quantize(DELTA_QUANTUM):f}"


def _delta_of(value: float) -> str:
    """A guarantee's delta (a float of the accountant), rounded up to the ledger's places."""
    return f"{Decimal(repr(value)).quantize(Decimal('1e-18')).quantize(DELTA_QUANTUM, rounding=ROUND_CEILING):f}"


def _rho(value) -> str:
    return f"{Decimal(value or 0).quantize(RHO_QUANTUM):f}"


@extend_schema_serializer(component_name="PurchaseLedger")
class LedgerOutputSerializer(serializers.Serializer):
    purchase = serializers.IntegerField()
    epsilon = serializers.CharField(help_text="Bought.")
    epsilon_reserved = serializers.CharField(help_text="Reserved by jobs, in all.")
    epsilon_committed = serializers.CharField(help_text="Spent by released jobs.")
    epsilon_refunded = serializers.CharField(help_text="Given back by failed and cancelled jobs.")
    epsilon_held = serializers.CharField(help_text="Reserved by jobs still open.")
    epsilon_remaining = serializers.CharField(
        help_text="The largest epsilon one more job (at delta 0) could ask for now, under the accountant."
    )
    delta = serializers.CharField()
    delta_committed = serializers.CharField()
    rho_cap = serializers.CharField(help_text="The largest zCDP rho within the allotment (0 without delta).")
    rho_reserved = serializers.CharField()
    rho_committed = serializers.CharField()
    rho_refunded = serializers.CharField()
    epsilon_spent = serializers.CharField(
        help_text="The guarantee of the answers released: the better of basic composition (epsilon_committed) and "
        "zCDP at the purchase's delta."
    )
    delta_spent = serializers.CharField(help_text="The delta of that guarantee.")
    composition = serializers.CharField(help_text="Which bound gives epsilon_spent: basic composition or zCDP.")
    share_used = serializers.FloatField(help_text="The share of the allotment that released and open jobs use, 0 to 1.")
    entries = serializers.ListField(
        child=inline_serializer(
            "LedgerEntry",
            {
                "id": serializers.IntegerField(),
                "kind": openapi.ChoiceOutput(choices=LedgerEntry.Kind.choices),
                "job": serializers.IntegerField(allow_null=True),
                "epsilon": serializers.CharField(),
                "delta": serializers.CharField(),
                "rho": serializers.CharField(),
                "created_at": serializers.DateTimeField(),
            },
        ),
        help_text="Oldest first.",
    )


class PurchaseLedgerApi(APIView):
    @openapi.api_operation(
        tag="purchases",
        summary="A purchase's budget ledger",
        description="Every reservation, commit and refund of the purchase's budget, and their totals.",
        responses={200: LedgerOutputSerializer},
        errors=[401, 404],
    )
    def get(self, request, purchase_id: int):
        purchase = market.purchase_get(user=request.user, purchase_id=purchase_id)
        entries = purchase.ledger_entries.order_by("created_at", "id")
        budget = market.purchase_budget(purchase)
        s = budget.totals
        return Response(
            {
                "purchase": purchase.pk,
                "epsilon": _eps(purchase.epsilon),
                "epsilon_reserved": _eps(s.epsilon[LedgerEntry.Kind.RESERVE]),
                "epsilon_committed": _eps(s.epsilon[LedgerEntry.Kind.COMMIT]),
                "epsilon_refunded": _eps(s.epsilon[LedgerEntry.Kind.REFUND]),
                "epsilon_held": _eps(budget.held),
                "epsilon_remaining": _eps(budget.remaining),
                "delta": _delta(purchase.delta),
                "delta_committed": _delta(s.delta[LedgerEntry.Kind.COMMIT]),
                "rho_cap": _rho(purchase.rho_cap),
                "rho_reserved": _rho(s.rho[LedgerEntry.Kind.RESERVE]),
                "rho_committed": _rho(s.rho[LedgerEntry.Kind.COMMIT]),
                "rho_refunded": _rho(s.rho[LedgerEntry.Kind.REFUND]),
                "epsilon_spent": _eps(budget.spent),
                "delta_spent": _delta(Decimal(repr(budget.released.delta))),
                "composition": budget.released.method,
                "share_used": round(budget.share_used, 6),
                "entries": [
                    {
                        "id": e.pk,
                        "kind": e.kind,
                        "job": e.job_id,
                        "epsilon": _eps(e.epsilon),
                        "delta": _delta(e.delta),
                        "rho": _rho(e.rho),
                        "created_at": e.created_at,
                    }
                    for e in entries
                ],
            }
        )


@extend_schema_serializer(component_name="DatasetBudget")
class BudgetOutputSerializer(serializers.Serializer):
    dataset = serializers.IntegerField()
    epsilon_cap = serializers.CharField(help_text="The dataset's epsilon cap, across all buyers together.")
    delta_cap = serializers.CharField(help_text="The dataset's delta cap, across all buyers together.")
    epsilon_sold = serializers.CharField(help_text="Bought by buyers, in all.")
    epsilon_spent = serializers.CharField(
        help_text="The guarantee of every answer released on the dataset, across buyers, under the accountant: the "
        "best of basic composition (epsilon_committed), zCDP over all its jobs at delta_cap, and the purchases' own "
        "guarantees added up (buyers may pool their answers), rounded up. Before tight accounting this was the plain "
        "sum, which epsilon_committed still is."
    )
    delta_spent = serializers.CharField(help_text="The delta of that guarantee.")
    composition = serializers.CharField(
        help_text="Which bound gives epsilon_spent: basic composition, zCDP, or the purchases' guarantees added up."
    )
    epsilon_committed = serializers.CharField(help_text="The epsilons of released jobs, added up.")
    epsilon_unsold = serializers.CharField(help_text="Still for sale: epsilon_cap minus epsilon_sold.")
    rho_cap = serializers.CharField(help_text="The largest zCDP rho within the caps (0 without delta).")
    rho_committed = serializers.CharField(help_text="The zCDP rhos of released jobs, added up.")
    share_used = serializers.FloatField(
        help_text="The share of the dataset's budget that released and open jobs use together under the accountant, "
        "0 to 1 (it never exceeds epsilon_sold / epsilon_cap)."
    )
    by_buyer = serializers.ListField(
        child=inline_serializer(
            "DatasetBudgetBuyer",
            {
                "buyer": serializers.CharField(),
                "epsilon_bought": serializers.CharField(help_text="Bought, over all the buyer's purchases."),
                "epsilon_spent": serializers.CharField(
                    help_text="The buyer's guarantee: each purchase's guarantee of its released answers (the better of "
                    "basic composition and zCDP at the purchase's delta), added up, rounded up."
                ),
                "delta_spent": serializers.CharField(help_text="The delta of that guarantee."),
                "epsilon_committed": serializers.CharField(help_text="The epsilons of their released jobs, added up."),
                "share_used": serializers.FloatField(
                    help_text="The share of the dataset's budget that this buyer's released and open jobs alone use "
                    "under the accountant (the better of basic composition and zCDP over them), 0 to 1."
                ),
                "credits_paid": serializers.CharField(),
                "jobs_released": serializers.IntegerField(),
            },
        ),
        help_text="One row per buyer, by username.",
    )


class DatasetBudgetApi(APIView):
    """For the dataset's owner: how much of its budget is sold and used, by buyer. Never a released value."""

    @openapi.api_operation(
        tag="datasets",
        summary="A dataset's budget, by buyer",
        description="For the dataset's owner: epsilon sold, the guarantee of the answers released and the share of "
        "the budget used under the accountant (docs/PRIVACY.md), in all and by buyer. Never a released value. Any "
        "other dataset is a 404.",
        responses={200: BudgetOutputSerializer},
        errors=[401, 404],
    )
    def get(self, request, dataset_id: int):
        budget = selectors.dataset_budget(owner=request.user, dataset_id=dataset_id)
        dataset = budget.dataset
        return Response(
            {
                "dataset": dataset.pk,
                "epsilon_cap": _eps(dataset.epsilon_cap),
                "delta_cap": _delta(dataset.delta_cap),
                "epsilon_sold": _eps(dataset.epsilon_sold),
                "epsilon_spent": _eps(budget.epsilon_spent),
                "delta_spent": _delta_of(budget.released.delta),
                "composition": budget.released.method,
                "epsilon_committed": _eps(budget.epsilon_committed),
                "epsilon_unsold": _eps(dataset.epsilon_cap - dataset.epsilon_sold),
                "rho_cap": _rho(dataset.rho_cap),
                "rho_committed": _rho(budget.rho_committed),
                "share_used": round(budget.reserved.share, 6),
                "by_buyer": [
                    {
                        "buyer": row.buyer,
                        "epsilon_bought": _eps(row.epsilon_bought),
                        "epsilon_spent": _eps(row.epsilon_spent),
                        "delta_spent": _delta_of(row.delta_spent),
                        "epsilon_committed": _eps(row.epsilon_committed),
                        "share_used": round(row.share_used, 6),
                        "credits_paid": f"{row.credits_paid.quantize(CREDIT_QUANTUM)}",
                        "jobs_released": row.jobs_released,
                    }
                    for row in budget.by_buyer
                ],
            }
        )
