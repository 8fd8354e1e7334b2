"""The policy file schema (pydantic, ``extra="forbid"``) and the engine's inputs and
outputs (frozen dataclasses). Pure: no I/O. See ``docs/policies.md`` for the schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl

from policies.duration import Period


def _period(text: str) -> str:
    Period.parse(text)  # raises ValueError -> pydantic error on this field
    return text


PeriodStr = Annotated[str, AfterValidator(_period)]
_ID = r"^[a-z][a-z0-9_]{0,62}$"


class LockMode(StrEnum):
    """S3 Object Lock modes; same values as ``archiver.store.port.LockMode``."""

    GOVERNANCE = "GOVERNANCE"
    COMPLIANCE = "COMPLIANCE"


class Kind(StrEnum):
    OBLIGATION = "obligation"  # a legal duty to keep for at least the period
    LIMITATION = "limitation"  # a maximum: keep no longer than the period
    DEFAULT = "default"  # the house period where nothing else speaks; exactly one is enabled


class Erasure(StrEnum):
    ALLOWED = "allowed"
    REFUSED = "refused"
    ALLOWED_UNLESS_OBLIGATION = "allowed_unless_obligation"


class ClockStart(StrEnum):
    MESSAGE_TIME = "message_time"
    CAPTURE_TIME = "capture_time"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Citation(_Strict):
    source: str = Field(min_length=1)
    section: str = Field(min_length=1)
    summary: str = Field(min_length=1)
    url: HttpUrl | None = None  # none for the operator's own default


class Retention(_Strict):
    period: PeriodStr
    clock_starts: ClockStart = ClockStart.MESSAGE_TIME
    accessible_period: PeriodStr | None = None  # the "easily accessible" part, if any


class DispositionSpec(_Strict):
    action: Literal["delete", "review"]
    two_person_approval: bool = False


class ConsentRules(_Strict):
    require_opt_in_for_template_categories: tuple[str, ...] = ()
    keep_consent_records_for: PeriodStr | None = None


# The record kinds the engine is asked about (``RecordFacts.record_kind``), in one place.
# The webhook event kinds (``archiver.whatsapp.events.EventKind``, pinned equal by a test),
# then the kinds the service itself makes. A policy naming anything else is refused.
EVENT_KINDS: tuple[str, ...] = (
    "message", "echo", "status", "history_message", "history_media", "history_chunk",
    "history_error", "contact_sync", "user_preference", "account_update", "template_update",
    "phone_number_update", "business_update", "call", "webhook_error", "api_send", "unknown",
)
SERVICE_KINDS: tuple[str, ...] = (
    "consent",  # consent records derived from messages and preference events
    "unprocessable",  # a delivery (or event) that could not be turned into a record
    "raw_capture",  # a raw capture batch: the deliveries byte for byte
    "media",  # an attachment's bytes (blob)
    "media_link",  # the record naming a message's blob
    "media_missing",  # the record saying a message's attachment could not be fetched
)
RECORD_KINDS: frozenset[str] = frozenset(EVENT_KINDS + SERVICE_KINDS)

# Classes of kinds a rule may name instead of listing kinds (docs/policies.md).
KIND_CLASSES: Mapping[str, frozenset[str]] = {
    # What people said: the customer's, the business's from the phone app (echo), from
    # its own systems (api_send), the synced history, and calls.
    "communication": frozenset({"message", "echo", "api_send", "history_message", "call"}),
    # What people attached: blobs, the records naming them, history media deliveries.
    "attachment": frozenset({"media", "media_link", "media_missing", "history_media"}),
    # Content the parser could not classify: it may be a communication, so kept like one.
    "unclassified": frozenset({"unknown", "unprocessable"}),
}


def expand_kinds(names: tuple[str, ...]) -> frozenset[str]:
    """The record kinds ``names`` stand for (classes expanded). Raises ValueError naming
    the first name that is neither a kind nor a class."""
    out: set[str] = set()
    for name in names:
        if name in KIND_CLASSES:
            out |= KIND_CLASSES[name]
        elif name in RECORD_KINDS:
            out.add(name)
        else:
            raise ValueError(
                f"unknown record kind {name!r}; kinds: {', '.join(sorted(RECORD_KINDS))}; "
                f"classes: {', '.join(sorted(KIND_CLASSES))}"
            )
    return frozenset(out)


def _kinds(names: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if names is not None:
        expand_kinds(names)  # raises ValueError -> pydantic error on this field
    return names


class AssignmentRule(_Strict):
    """All given fields must match (AND); each field lists alternatives (OR); absent = any.
    ``record_kind`` names kinds or classes of them (``KIND_CLASSES``)."""

    business_numbers: tuple[str, ...] | None = None  # phone_number_id or display number
    direction: tuple[Literal["inbound", "outbound"], ...] | None = None
    origin: tuple[str, ...] | None = None
    message_type: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None  # any one of these tags
    record_kind: Annotated[tuple[str, ...] | None, AfterValidator(_kinds)] = None

    @property
    def record_kinds(self) -> frozenset[str] | None:
        """``record_kind`` with classes expanded (None: any kind)."""
        return None if self.record_kind is None else expand_kinds(self.record_kind)


class ParameterSpec(_Strict):
    default: str
    description: str = Field(min_length=1)


class Policy(_Strict):
    id: str = Field(pattern=_ID)
    title: str = Field(min_length=1)
    kind: Kind
    enabled: bool = True
    citations: tuple[Citation, ...] = Field(min_length=1)
    retention: Retention
    lock_mode: LockMode
    disposition: DispositionSpec
    erasure: Erasure
    consent: ConsentRules = ConsentRules()
    applies_to: tuple[AssignmentRule, ...] | None = None  # None: every record
    notes: str | None = None
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    # Filled by the loader, not the file: resolved parameter values and the source file.
    resolved_parameters: dict[str, str] = Field(default_factory=dict, exclude=True)
    source_file: str = Field(default="", exclude=True)

    @property
    def period(self) -> Period:
        return Period.parse(self.retention.period)


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Every loaded policy by id (later directories replace earlier ones by id)."""

    policies: Mapping[str, Policy]

    @property
    def enabled(self) -> tuple[Policy, ...]:
        return tuple(p for p in self.policies.values() if p.enabled)

    def default_policy(self) -> Policy:
        return next(p for p in self.enabled if p.kind is Kind.DEFAULT)


@dataclass(frozen=True, slots=True)
class RecordFacts:
    """What the engine may know of a record; never content. Times timezone-aware UTC."""

    business_number: str | None
    phone_number_id: str | None
    direction: str | None  # "inbound" | "outbound"
    origin: str | None  # e.g. "customer", "api", "app_echo", "history_sync"
    message_type: str | None  # e.g. "text", "image", "template"
    record_kind: str  # one of RECORD_KINDS, e.g. "message", "echo", "consent", "raw_capture"
    tags: frozenset[str] = frozenset()
    message_time: datetime | None = None
    capture_time: datetime | None = None
    template_category: str | None = None  # e.g. "MARKETING" for template messages


@dataclass(frozen=True, slots=True)
class Disposition:
    action: str  # "delete" | "review"
    two_person_approval: bool


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer for one record. ``reasons`` read as sentences, in order."""

    matched: tuple[str, ...]
    governing: str
    retain_until: datetime
    clock_start: datetime
    accessible_until: datetime | None
    lock_mode: LockMode
    disposition: Disposition
    erasure: Erasure  # effective stance at ``decided_at``: ALLOWED or REFUSED
    erasure_blocked_by: tuple[str, ...]
    opt_in_required_by: tuple[str, ...]
    conflict_rule: str
    reasons: tuple[str, ...]
    decided_at: datetime
    facts: RecordFacts = field(repr=False, compare=False)
