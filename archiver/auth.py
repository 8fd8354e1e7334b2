"""API bearer tokens: roles, scopes to business numbers, expiry, revocation.

A token reads ``wa_<token_id>_<secret>``; only ``SHA-256(secret)`` is stored (in the
working-state store under ``tokens/<token_id>``). The secret carries 256 bits of
randomness, so a fast hash is the right tool here (argon2 is for low-entropy
passwords; it would cost ~50 ms on every API call). Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from archiver.errors import AuthError, Forbidden, InvalidInput, NotFound
from archiver.keyspace import TOKENS_PREFIX
from archiver.store.port import StateStore


class Role(StrEnum):
    ADMIN = "admin"
    COMPLIANCE_OFFICER = "compliance_officer"
    LEGAL = "legal"
    AUDITOR = "auditor"
    SERVICE = "service"


ALL_ROLES: frozenset[Role] = frozenset(Role)
# Meta's ids are positive decimal integers: no sign, no leading zero ("0111" would look
# like "111" to a person and scope the token to nothing).
_PHONE_NUMBER_ID = re.compile(r"[1-9][0-9]{0,31}")
MAX_TOKEN_DAYS = 3660  # ten years: longer is a mistake, not a policy
READER_ROLES: frozenset[Role] = frozenset(
    {Role.ADMIN, Role.COMPLIANCE_OFFICER, Role.LEGAL, Role.AUDITOR}
)


class InvalidTokenSpec(InvalidInput):
    """A token asked with a bad number, name, expiry or person; ``code`` names which."""


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: str
    name: str
    role: Role
    numbers: tuple[str, ...] | None  # None = every business number
    expires_at: datetime | None
    person: str | None = None  # the person the token is bound to (approvals count persons)

    def sees_number(self, number: str | None) -> bool:
        """Whether this token covers business ``number`` (a ``phone_number_id``)."""
        return self.numbers is None or (number is not None and number in self.numbers)

    def covers(self, numbers: Iterable[str] | None) -> bool:
        """Whether a thing concerning ``numbers`` (phone_number_ids) is within this token's
        scope. An unscoped token covers everything; a scoped one only things concerning a
        non-empty set of its own numbers: ``None`` or empty means "no particular number"
        (or every number), which only an unscoped token may see."""
        if self.numbers is None:
            return True
        wanted = set(numbers or ())
        return bool(wanted) and wanted <= set(self.numbers)


@dataclass(frozen=True, slots=True)
class TokenRecord:
    token_id: str
    name: str
    role: str
    numbers: list[str] | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    secret_sha256: str
    person: str | None = None  # set at creation; tokens made before it have none


class TokenService:
    prefix = TOKENS_PREFIX

    def __init__(self, state: StateStore, *, cache_seconds: float = 5.0) -> None:
        self._state = state
        # A short positive cache spares the state store a round trip per API call; a
        # revocation in another replica takes effect within ``cache_seconds``.
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, TokenRecord]] = {}

    def create(
        self,
        *,
        role: Role,
        name: str,
        numbers: Sequence[str] | None = None,
        expires_in_days: float | None = None,
        now: datetime | None = None,
        person: str | None = None,
    ) -> tuple[str, TokenRecord]:
        """Return ``(plaintext token, record)``; the plaintext is never stored.

        ``numbers`` are business numbers as ``phone_number_id`` (digits only): the one
        number identity. Raises InvalidTokenSpec for anything else (a ``+1 555…`` display
        number would scope the token to nothing). ``person`` binds the token to one person (an
        operator-chosen stable id, e.g. an employee id): two-person approval counts
        persons, so only bound tokens can approve. Raises InvalidTokenSpec for an empty or
        over-long person id."""
        for number in numbers or ():
            if not _PHONE_NUMBER_ID.fullmatch(number):
                raise InvalidTokenSpec(
                    f"token number {number!r} is not a phone_number_id (digits only)",
                    code="token_number_invalid",
                )
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidTokenSpec(
                "name must be non-empty and at most 200 characters", code="token_name_invalid"
            )
        if expires_in_days is not None and not (
            math.isfinite(expires_in_days) and 0 < expires_in_days <= MAX_TOKEN_DAYS
        ):
            # nan, inf or 1e20 would crash the date arithmetic; 0 or less would issue a
            # token that is already expired.
            raise InvalidTokenSpec(
                f"expiry must be more than 0 and at most {MAX_TOKEN_DAYS} days",
                code="token_expiry_invalid",
            )
        if person is not None:
            person = person.strip()
            if not person or len(person) > 200:
                raise InvalidTokenSpec(
                    "person must be a non-empty id of at most 200 characters",
                    code="token_person_invalid",
                )
        now = now or datetime.now(UTC)
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = TokenRecord(
            token_id=token_id,
            name=name,
            role=role.value,
            numbers=sorted(set(numbers)) if numbers else None,
            created_at=now.isoformat(),
            expires_at=(now + timedelta(days=expires_in_days)).isoformat()
            if expires_in_days is not None
            else None,
            revoked_at=None,
            secret_sha256=hashlib.sha256(secret.encode()).hexdigest(),
            person=person,
        )
        self._state.put(self.prefix + token_id, json.dumps(asdict(record)).encode(), if_absent=True)
        return f"wa_{token_id}_{secret}", record

    def _load(self, token_id: str) -> tuple[TokenRecord, str] | None:
        value = self._state.get(self.prefix + token_id)
        if value is None:
            return None
        return TokenRecord(**json.loads(value.value)), value.token

    def is_cached(self, token: str | None) -> bool:
        """Whether ``authenticate(token)`` would be answered from memory (no state read):
        an async caller can then call it on the event loop without blocking it."""
        parts = (token or "").split("_", 2)
        if len(parts) != 3:
            return True  # malformed: refused without a read
        cached = self._cache.get(parts[1])
        return cached is not None and time.monotonic() - cached[0] < self._cache_seconds

    def authenticate(self, token: str | None, now: datetime | None = None) -> Principal:
        """Raise AuthError for a missing, malformed, unknown, expired or revoked token."""
        if not token:
            raise AuthError("missing bearer token", code="token_missing")
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "wa" or not parts[1] or not parts[2]:
            raise AuthError("malformed bearer token", code="token_malformed")
        digest = hashlib.sha256(parts[2].encode()).hexdigest()
        cached = self._cache.get(parts[1])
        if cached is not None and time.monotonic() - cached[0] < self._cache_seconds:
            record: TokenRecord | None = cached[1]
        else:
            loaded = self._load(parts[1])
            record = loaded[0] if loaded is not None else None
            if record is not None:
                self._cache[parts[1]] = (time.monotonic(), record)
        if record is None or not hmac.compare_digest(digest, record.secret_sha256):
            raise AuthError("unknown bearer token", code="token_invalid")
        if record.revoked_at is not None:
            raise AuthError("token revoked", code="token_revoked")
        now = now or datetime.now(UTC)
        expires = datetime.fromisoformat(record.expires_at) if record.expires_at else None
        if expires is not None and now >= expires:
            raise AuthError("token expired", code="token_expired")
        return Principal(
            token_id=record.token_id,
            name=record.name,
            role=Role(record.role),
            numbers=tuple(record.numbers) if record.numbers else None,
            expires_at=expires,
            person=record.person,
        )

    def revoke(self, token_id: str, now: datetime | None = None) -> TokenRecord:
        loaded = self._load(token_id)
        if loaded is None:
            raise NotFound(f"no token {token_id}", code="token_not_found")
        record, cas = loaded
        if record.revoked_at is None:
            record = TokenRecord(
                **{**asdict(record), "revoked_at": (now or datetime.now(UTC)).isoformat()}
            )
            self._state.put(
                self.prefix + token_id, json.dumps(asdict(record)).encode(), if_match=cas
            )
        self._cache.pop(token_id, None)
        return record

    def list(self) -> Iterator[TokenRecord]:
        for key in self._state.list(self.prefix):
            loaded = self._load(key.removeprefix(self.prefix))
            if loaded is not None:
                yield loaded[0]


def require_role(principal: Principal, allowed: frozenset[Role]) -> None:
    if principal.role not in allowed:
        raise Forbidden(
            f"role {principal.role.value} may not do this",
            code="role_forbidden",
            details={"allowed": sorted(r.value for r in allowed)},
        )
