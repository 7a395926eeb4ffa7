"""What a PATE job costs the buyer: ``price_per_label`` credits per answered label, shared by the
owners of the member datasets.

* Submission holds ``price_per_label x max_queries`` on the buyer's wallet (the conditional debit of
  :func:`accounts.services.wallet_change`, a 409 ``insufficient_credits`` and nothing written when the
  wallet cannot cover it), in the transaction that creates the job, so a release never waits on credits
  the buyer spent meanwhile.
* Release pays: in the releasing transaction, what the unanswered labels held goes back to the buyer
  and ``price_per_label x answered`` is split between the members' owners, equally by member dataset
  (an owner with two member datasets gets two shares). Not in proportion to the teachers: those follow
  the members' row counts, which are private unless an owner made theirs public, and a split by them
  would publish each member's share of the rows. The cents that do not divide go to the members in
  primary-key order, one each.
* Failure or cancellation gives the whole hold back, in the transaction that refunds the budget.

Wallets are touched in user-id order, as purchases do, so two jobs paying each other's owners never
deadlock. The price and the hold are fixed on the job at submission (``spec.price_per_label``).
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from accounts.models import CREDIT_QUANTUM, CreditEntry, User
from accounts.services import wallet_change
from compute.models import Job
from marketplace.models import Dataset, LedgerEntry


def payment_price(job: Job) -> Decimal:
    return Decimal(job.spec["price_per_label"])


def payment_hold_amount(*, price_per_label: Decimal, max_queries: int) -> Decimal:
    return (price_per_label * max_queries).quantize(CREDIT_QUANTUM)


def payment_hold(job: Job) -> None:
    """Hold the most the job can cost; a 409 (``insufficient_credits``) when the wallet cannot."""
    amount = payment_hold_amount(price_per_label=payment_price(job), max_queries=int(job.spec["max_queries"]))
    if amount > 0:
        wallet_change(
            user=job.buyer,
            amount=-amount,
            kind=CreditEntry.Kind.PURCHASE,
            memo=f"PATE job {job.pk}: held for up to {job.spec['max_queries']} labels"[:200],
        )


def _owners(job: Job) -> list[int]:
    """The owner of each member dataset (from the job's reserve rows), in dataset primary-key order."""
    ids = (
        LedgerEntry.objects.filter(job_id=job.pk, purchase__isnull=True, kind=LedgerEntry.Kind.RESERVE)
        .order_by("dataset_id")
        .values_list("dataset_id", flat=True)
    )
    owner_of = dict(Dataset.objects.filter(pk__in=list(ids)).values_list("pk", "owner_id"))
    return [owner_of[pk] for pk in ids]


def split(amount: Decimal, shares: int) -> list[Decimal]:
    """``amount`` in ``shares`` equal parts to the cent, the leftover cents one each to the first parts."""
    part = (amount / shares).quantize(CREDIT_QUANTUM, rounding=ROUND_DOWN)
    parts = [part] * shares
    left = int((amount - part * shares) / CREDIT_QUANTUM)
    for i in range(left):
        parts[i] += CREDIT_QUANTUM
    return parts


def payment_settle(job: Job, *, answered: int) -> dict[str, object]:
    """Pay for ``answered`` labels out of the hold: the rest back to the buyer, the price to the owners.
    Returns what the result states of it."""
    price = payment_price(job)
    held = payment_hold_amount(price_per_label=price, max_queries=int(job.spec["max_queries"]))
    cost = payment_hold_amount(price_per_label=price, max_queries=min(answered, int(job.spec["max_queries"])))
    moves: dict[int, tuple[Decimal, str]] = {}
    if held > cost:
        moves[job.buyer_id] = (held - cost, CreditEntry.Kind.ADJUSTMENT)
    owners = _owners(job)
    if cost > 0 and owners:
        for owner_id, part in zip(owners, split(cost, len(owners)), strict=True):
            before, _ = moves.get(owner_id, (Decimal(0), CreditEntry.Kind.SALE))
            moves[owner_id] = (before + part, CreditEntry.Kind.SALE)
    users = User.objects.in_bulk(list(moves))
    for user_id in sorted(moves):
        amount, kind = moves[user_id]
        if amount > 0:
            what = "the unanswered labels' hold back" if user_id == job.buyer_id else f"{answered} labels sold"
            wallet_change(user=users[user_id], amount=amount, kind=kind, memo=f"PATE job {job.pk}: {what}"[:200])
    return {"price_per_label": f"{price:f}", "labels_paid": answered, "credits": f"{cost:f}"}


def payment_refund(job: Job) -> None:
    """Give the buyer the whole hold back (a failed or cancelled job)."""
    held = payment_hold_amount(price_per_label=payment_price(job), max_queries=int(job.spec["max_queries"]))
    if held > 0:
        wallet_change(
            user=job.buyer,
            amount=held,
            kind=CreditEntry.Kind.ADJUSTMENT,
            memo=f"PATE job {job.pk}: hold given back"[:200],
        )
