"""Writes for accounts: sign-up, wallets and the credit ledger, API keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import CREDIT_QUANTUM, ApiKey, CreditEntry, User, Wallet
from config.exceptions import Conflict, ValidationFailed
from config.lookups import get_or_404

API_KEY_PREFIX = "ck_"
# The shape api_key_create produces: "ck_", 8 hex digits of public prefix, "_", the secret part.
# Anything else is refused before it reaches the database, so junk in the header (a NUL byte,
# which PostgreSQL cannot even compare) is a 401 and never a 500.
API_KEY_PATTERN = re.compile(r"ck_([0-9a-f]{8})_[A-Za-z0-9_-]{20,100}")
VALID_ROLES = ("owner", "buyer")

# Sign-up and account enumeration. Usernames are public handles here (the catalogue names each
# dataset's owner, and owners see their buyers' names), so a sign-up must say when a name cannot
# be had, as every platform with handles does. What it must not offer is a cheap, silent oracle:
#
# * A name is looked up only when everything else in the request is valid. A probe with a bad
#   password, no role or a malformed address gets the same answer, byte for byte, whether the name
#   is taken or not; learning that a name is taken costs a complete sign-up, which for a free name
#   creates an account (and the API's per-address rate limit applies).
# * Every unavailable name gets one message, USERNAME_UNAVAILABLE: taken (in any letter case) and
#   reserved names alike, so the answer does not say that an account exists.
# * An email address is never looked up: addresses need not be unique, and no answer says whether
#   one is registered.
USERNAME_UNAVAILABLE = "This username is not available. Choose another."
# Names that could pass for the platform speaking; compared case-insensitively.
RESERVED_USERNAMES = frozenset(
    {
        "admin",
        "administrator",
        "root",
        "superuser",
        "staff",
        "support",
        "help",
        "security",
        "system",
        "api",
        "cloakroom",
        "anonymous",
        "null",
        "none",
    }
)


def hash_api_key(key: str) -> str:
    # API keys carry 256 bits of randomness, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def username_available(username: str) -> bool:
    """Whether ``username`` may be signed up: neither reserved nor taken, in any letter case."""
    return username.lower() not in RESERVED_USERNAMES and not User.objects.filter(username__iexact=username).exists()


def _username_unavailable() -> ValidationFailed:
    return ValidationFailed(USERNAME_UNAVAILABLE, fields={"username": [USERNAME_UNAVAILABLE]})


@transaction.atomic
def user_signup(*, username: str, email: str, password: str, roles: list[str]) -> User:
    """Create a user with the given roles, a wallet, and the configured sign-up credits.

    The username is looked up last, once nothing else is wrong, and an unavailable one (taken or
    reserved) gets the one USERNAME_UNAVAILABLE answer: see the comment above it.
    """
    errors: dict[str, list[str]] = {}
    unknown = [r for r in roles if r not in VALID_ROLES]
    if unknown:
        errors["roles"] = [f"Unknown role {unknown[0]!r}; choose from 'owner' and 'buyer'."]
    elif not roles:
        errors["roles"] = ["Choose at least one role: 'owner', 'buyer' or both."]
    candidate = User(username=username, email=email)
    try:
        password_validation.validate_password(password, candidate)
    except DjangoValidationError as exc:
        errors["password"] = list(exc.messages)
    if errors:
        raise ValidationFailed(next(iter(errors.values()))[0], fields=errors)
    if not username_available(username):
        raise _username_unavailable()

    try:
        with transaction.atomic():
            user = User.objects.create_user(
                username=username,
                email=email,
                password=password,
                is_owner="owner" in roles,
                is_buyer="buyer" in roles,
            )
    except IntegrityError:  # the same name signed up a moment ago
        raise _username_unavailable() from None
    wallet_create(user=user)
    return user


def wallet_create(*, user: User) -> Wallet:
    wallet, created = Wallet.objects.get_or_create(user=user)
    grant = settings.CLOAKROOM_SIGNUP_CREDITS
    if created and grant > 0:
        wallet_change(user=user, amount=grant, kind=CreditEntry.Kind.SIGNUP_GRANT, memo="sign-up credits")
        wallet.refresh_from_db()
    return wallet


def wallet_change(
    *,
    user: User,
    amount: Decimal,
    kind: str,
    purchase=None,
    memo: str = "",
) -> CreditEntry:
    """Add ``amount`` (negative to debit) to a wallet and append the ledger row, atomically.

    The debit is a conditional UPDATE (``balance >= -amount``), so two concurrent debits can never
    take a wallet below zero; the caller must already hold a transaction when it combines this
    with other writes. Raises :class:`Conflict` when the wallet cannot pay.
    """
    amount = Decimal(amount).quantize(CREDIT_QUANTUM)
    with transaction.atomic():
        wallet, _ = Wallet.objects.get_or_create(user=user)
        query = Wallet.objects.filter(pk=wallet.pk)
        if amount < 0:
            query = query.filter(balance__gte=-amount)
        updated = query.update(balance=F("balance") + amount, updated_at=timezone.now())
        if not updated:
            balance = Wallet.objects.get(pk=wallet.pk).balance
            raise Conflict(
                f"Not enough credits: this costs {-amount} credits and your wallet holds {balance}.",
                code="insufficient_credits",
                extra={"credits_available": str(balance), "credits_needed": str(-amount)},
            )
        balance_after = Wallet.objects.values_list("balance", flat=True).get(pk=wallet.pk)
        return CreditEntry.objects.create(
            wallet=wallet, kind=kind, amount=amount, balance_after=balance_after, purchase=purchase, memo=memo
        )


def api_key_create(*, user: User, name: str) -> tuple[ApiKey, str]:
    """Create an API key; returns the row and the full key, which is never stored or shown again."""
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("Give the key a name.", fields={"name": ["This field may not be blank."]})
    for _ in range(5):
        prefix = secrets.token_hex(4)
        key = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                row = ApiKey.objects.create(user=user, name=name[:100], prefix=prefix, hashed_key=hash_api_key(key))
            return row, key
        except IntegrityError:
            continue
    raise Conflict("Could not allocate a unique key prefix; try again.", code="key_collision")


def api_key_revoke(*, user: User, key_id: int) -> ApiKey:
    row = get_or_404(ApiKey.objects, message="No such API key.", pk=key_id, user=user)
    if row.revoked_at is None:
        row.revoked_at = timezone.now()
        row.save(update_fields=["revoked_at"])
    return row


def api_key_authenticate(*, key: str) -> User | None:
    """Return the active user behind ``key``, or None. Records the key's last use."""
    match = API_KEY_PATTERN.fullmatch(key)
    if match is None:
        return None
    prefix = match.group(1)
    row = ApiKey.objects.select_related("user").filter(prefix=prefix, revoked_at__isnull=True).first()
    if row is None or not hmac.compare_digest(row.hashed_key, hash_api_key(key)):
        return None
    if not row.user.is_active:
        return None
    now = timezone.now()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        # Written at most once a minute per key, so a busy client does not turn reads into writes.
        ApiKey.objects.filter(pk=row.pk).update(last_used_at=now)
    return row.user
