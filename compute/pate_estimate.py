"""The live estimate of a PATE job (the ensemble page's form): the epsilon reserved on every member dataset
for the asked queries and the credits held, from the same engine functions the submission uses
(compute/pate_services.py): ``parse_spec``, ``reserved_rho`` rounded up as the ledger stores it, and its
epsilon at the members' delta. Reads no private row and writes nothing.

The buyer's table is not sent for the estimate, so its row count is unknown: the estimate assumes
``max_queries`` rows (or, when it is empty, the default's cap of 1,000); a table with fewer rows asks,
reserves and holds less.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from accounts.models import User
from accounts.selectors import wallet_balance
from compute.engines import accounting
from compute.engines import pate as engine
from compute.engines.pate.spec import DEFAULT_MAX_QUERIES
from compute.kinds.base import query_error
from compute.kinds.pate import epsilon_of
from compute.pate_payment import payment_hold_amount
from config.exceptions import Conflict
from marketplace.ensembles.selectors import ensemble_member_datasets
from marketplace.models import Ensemble


@dataclass(frozen=True)
class PateEstimate:
    spec: engine.PateSpec
    rows_assumed: int
    members: int
    delta: Decimal
    rho: Decimal  # reserved on every member, as the ledger stores it
    epsilon: Decimal  # the reservation at delta, as the job states it
    rho_per_query: float
    hold: Decimal  # credits held: price per label x max_queries
    balance: Decimal | None
    fitted: bool  # a target epsilon changed the sigmas or max_queries

    @property
    def affordable(self) -> bool | None:
        return None if self.balance is None else self.balance >= self.hold


def _assumed_rows(body: dict[str, Any]) -> int:
    asked = body.get("max_queries")
    if isinstance(asked, int) and not isinstance(asked, bool) and asked >= 1:
        return asked
    return DEFAULT_MAX_QUERIES


def pate_estimate(*, user: User | None, ensemble: Ensemble, spec: dict[str, Any]) -> PateEstimate:
    """The reservation and hold of ``spec`` on ``ensemble``'s current members; a 400 naming the spec's
    field (``spec.sigma1``) as the submission would, a 409 when the ensemble has no member to label with."""
    datasets = ensemble_member_datasets(ensemble=ensemble)
    if not datasets:
        raise Conflict("This ensemble has no published member dataset to label with.", code="ensemble_empty")
    delta = min(d.delta_cap for d in datasets)
    rows = _assumed_rows(spec)
    try:
        parsed = engine.parse_spec(spec, rows, delta=float(delta))
        rho = accounting.rho_charge(engine.reserved_rho(parsed))
    except engine.QueryError as exc:
        raise query_error(exc) from None
    return PateEstimate(
        spec=parsed,
        rows_assumed=rows,
        members=len(datasets),
        delta=delta,
        rho=rho,
        epsilon=epsilon_of(rho, delta),
        rho_per_query=engine.threshold_rho(parsed.sigma1) + engine.gnmax_rho(parsed.sigma2),
        hold=payment_hold_amount(price_per_label=ensemble.price_per_label, max_queries=parsed.max_queries),
        balance=wallet_balance(user=user) if user is not None and user.is_authenticated else None,
        fitted=spec.get("epsilon") is not None,
    )
