"""The plain facts one report is computed from (pure code, no I/O).

The service (``archiver/reporting/``) gathers these from the log, the index, the store and
the working state for one regulation, period and set of business numbers; ``compute``
turns them into numbers and findings. Facts are stored by the service, so every class
round-trips through JSON: ``ReportFacts.from_dict(json.loads(json.dumps(f.to_dict())))
== f``.

A report is kept under lock and names no customer. Facts therefore carry pseudonyms
(``s_…`` subjects, ``r_…`` records, ``m_…`` message refs) and business identifiers only;
the identifier checks below refuse anything else (a phone number passed as a subject
raises ``FactsError``). Two fields hold free text from the working state that may name a
person — ``AccessEvent.detail`` (a search query, an export scope) and
``ErasureFact.note`` — and are never rendered or copied into the twin.

Times are timezone-aware UTC; the period is half-open ``[start, end)``. Malformed facts
raise ``reports.errors.FactsError`` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from reports import codec
from reports.errors import FactsError
from reports.errors import ReportsError as ReportsError  # re-exported for callers

FACTS_SCHEMA = "wa-archiver.report-facts/1"


class Regulation(StrEnum):
    GDPR = "gdpr"
    HIPAA = "hipaa"
    FINRA = "finra"  # FINRA 4511 with SEC 17a-4(f) as amended in 2022


class Origin(StrEnum):
    """Same values as ``archiver.whatsapp.events.Origin``: the service passes them through."""

    CUSTOMER = "customer"
    BUSINESS_APP = "business_app"  # an echo of a message typed in the WhatsApp Business App
    BUSINESS_API = "business_api"
    HISTORY = "history"  # history sync of the Business App's past messages
    META = "meta"  # account and template notices from Meta


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    NONE = "none"  # statuses, account events


class LockMode(StrEnum):
    GOVERNANCE = "GOVERNANCE"
    COMPLIANCE = "COMPLIANCE"


class LockCheckMode(StrEnum):
    FULL = "full"  # every object of the period was read
    SAMPLE = "sample"  # a random sample of stated size (seeded, so reproducible)


class MediaState(StrEnum):
    FETCHED = "fetched"
    MISSING = "missing"  # never fetched (expired at Meta, download failed, not yet tried)


class ErasureStatus(StrEnum):
    COMPLETED = "completed"
    REFUSED = "refused"
    PENDING = "pending"


class ConsentKind(StrEnum):
    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"


class AccessAction(StrEnum):
    SEARCH = "search"
    VIEW = "view"
    EXPORT = "export"


class Consistency(StrEnum):
    VERIFIED = "verified"  # proof from the previous report's checkpoint checked
    FAILED = "failed"  # the proof did not verify: the log was rewritten
    NOT_CHECKED = "not_checked"  # a previous checkpoint exists but no proof was checked
    FIRST_REPORT = "first_report"  # no previous report: nothing to be consistent with


# Pseudonyms are "<prefix>_" + lowercase base32 (archiver.records.pseudonym).
_PSEUDONYM = re.compile(r"^[a-z]_[a-z2-7]{8,}$")
# Free-form identifiers of the business side (number ids, object keys, actors, codes).
_CODE = re.compile(r"^[a-z][a-z0-9_.:-]{0,79}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _check_pseudonym(value: str, prefix: str, where: str) -> None:
    if not (_PSEUDONYM.match(value) and value.startswith(prefix)):
        # The value itself is not echoed: it may be a phone number or a name.
        raise FactsError(f"{where}: not a {prefix}… pseudonym")


def _check_code(value: str, where: str) -> None:
    if not _CODE.match(value):
        raise FactsError(f"{where}: {value!r} is not a lowercase code")


_ZERO = timedelta(0)


def _check_utc(value: datetime, where: str) -> None:
    if value.tzinfo is not UTC and value.utcoffset() != _ZERO:  # fast path: datetime.UTC
        raise FactsError(f"{where}: time must be timezone-aware UTC")


def _check_count(value: int, where: str) -> None:
    if isinstance(value, bool) or value < 0:
        raise FactsError(f"{where}: must be a non-negative integer")


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime  # exclusive

    def __post_init__(self) -> None:
        _check_utc(self.start, "period.start")
        _check_utc(self.end, "period.end")
        if self.end <= self.start:
            raise FactsError("period: end must be after start")

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True, slots=True)
class Scope:
    regulation: Regulation
    period: Period
    numbers: tuple[str, ...]  # business phone_number_ids covered (business, not customer)
    archive: str  # the archive's name as printed (an organisation, not a person)


@dataclass(frozen=True, slots=True)
class PolicyInForce:
    policy_id: str
    version: str
    retain_days: int  # the policy's retention period in days
    lock_mode: LockMode

    def __post_init__(self) -> None:
        _check_code(self.policy_id, "policy.policy_id")
        _check_count(self.retain_days, "policy.retain_days")


@dataclass(frozen=True, slots=True)
class RecordFact:
    record_id: str
    kind: str  # message, status, account, …
    origin: Origin
    direction: Direction
    number: str  # business phone_number_id
    occurred_at: datetime
    subject: str | None  # s_… pseudonym, None for events without a data subject
    policy_id: str
    required_retain_until: datetime  # what the policy requires for this record

    def __post_init__(self) -> None:
        _check_pseudonym(self.record_id, "r_", "record.record_id")
        _check_code(self.kind, "record.kind")
        _check_utc(self.occurred_at, "record.occurred_at")
        _check_utc(self.required_retain_until, "record.required_retain_until")
        if self.subject is not None:
            _check_pseudonym(self.subject, "s_", "record.subject")


@dataclass(frozen=True, slots=True)
class RecordCount:
    """How many records of the period share a kind, origin, direction, number and UTC day:
    the aggregation-shaped input, which large archives give instead of one ``RecordFact``
    per record (an index aggregation or one streamed pass; see docs/reports.md)."""

    kind: str
    origin: Origin
    direction: Direction
    number: str
    day: datetime  # midnight UTC of the day
    count: int

    def __post_init__(self) -> None:
        _check_code(self.kind, "count.kind")
        _check_utc(self.day, "count.day")
        if (self.day.hour, self.day.minute, self.day.second, self.day.microsecond) != (
                0, 0, 0, 0):
            raise FactsError("count.day must be midnight UTC")
        _check_count(self.count, "count.count")


@dataclass(frozen=True, slots=True)
class NumberActivity:
    """One number's records of the period in time: the first, the last, and the longest
    stretch between two consecutive records, known exactly when it is longer than
    ``resolution_seconds`` (the gatherer buckets time; a shorter stretch is only known to
    be at most that long). Enough to tell silence without every record's time."""

    number: str
    first_at: datetime
    last_at: datetime
    gap_start: datetime | None  # the longest inner stretch, when > resolution_seconds
    gap_end: datetime | None
    resolution_seconds: int

    def __post_init__(self) -> None:
        _check_utc(self.first_at, "activity.first_at")
        _check_utc(self.last_at, "activity.last_at")
        if self.last_at < self.first_at:
            raise FactsError("activity: last_at before first_at")
        if (self.gap_start is None) != (self.gap_end is None):
            raise FactsError("activity: gap_start and gap_end go together")
        if self.gap_start is not None and self.gap_end is not None:
            _check_utc(self.gap_start, "activity.gap_start")
            _check_utc(self.gap_end, "activity.gap_end")
            if not self.first_at <= self.gap_start <= self.gap_end <= self.last_at:
                raise FactsError("activity: the gap must lie between first_at and last_at")
        _check_count(self.resolution_seconds, "activity.resolution_seconds")


@dataclass(frozen=True, slots=True)
class RecordSummary:
    counts: tuple[RecordCount, ...] = ()
    activity: tuple[NumberActivity, ...] = ()  # one per number with a record in the period


@dataclass(frozen=True, slots=True)
class MediaFact:
    record_id: str  # the message record the media belongs to
    media_ref: str  # the blob's pseudonymous ref or content hash, never a URL
    state: MediaState

    def __post_init__(self) -> None:
        _check_pseudonym(self.record_id, "r_", "media.record_id")


@dataclass(frozen=True, slots=True)
class LockObservation:
    """One object's lock as the store reports it (HEAD / GetObjectRetention), not the index."""

    object_key: str
    version_id: str
    record_id: str | None
    observed_mode: LockMode | None  # None: the object has no retention lock at all
    observed_retain_until: datetime | None
    required_mode: LockMode
    required_retain_until: datetime
    # What the object is: a record, a raw capture batch, a media blob or an audit object.
    kind: str = "record"

    def __post_init__(self) -> None:
        _check_code(self.kind, "lock.kind")
        if self.record_id is not None:
            _check_pseudonym(self.record_id, "r_", "lock.record_id")
        _check_utc(self.required_retain_until, "lock.required_retain_until")
        if self.observed_retain_until is not None:
            _check_utc(self.observed_retain_until, "lock.observed_retain_until")


@dataclass(frozen=True, slots=True)
class LockCheck:
    mode: LockCheckMode
    population: int  # objects of the period
    read: int  # objects whose lock was read (== population when full)
    seed: str | None  # the sample's seed, so the same sample can be drawn again
    observations: tuple[LockObservation, ...]

    def __post_init__(self) -> None:
        _check_count(self.population, "lock_check.population")
        _check_count(self.read, "lock_check.read")
        if self.read != len(self.observations):
            raise FactsError("lock_check.read must equal the number of observations")
        if self.read > self.population:
            raise FactsError("lock_check.read exceeds the population")
        if self.mode is LockCheckMode.FULL and self.read != self.population:
            raise FactsError("lock_check: a full check reads the whole population")
        for o in self.observations:
            if o.kind != self.kind:
                raise FactsError(f"lock_check: a {o.kind} observation in the {self.kind} check")

    # The kind of object checked (every observation is of it); ``ReportFacts.lock_check`` is
    # the records', ``ReportFacts.object_lock_checks`` the raw batches', blobs' and audit
    # objects', each drawn the same way (full, or a seeded sample of the same size).
    kind: str = "record"
    # True: the check covers every number's objects of this kind, not only the report's
    # (an audit batch holds events of many numbers); the pages and the twin say so.
    archive_wide: bool = False


@dataclass(frozen=True, slots=True)
class HoldFact:
    hold_id: str
    placed_at: datetime
    released_at: datetime | None
    records: int  # records held

    def __post_init__(self) -> None:
        _check_utc(self.placed_at, "hold.placed_at")
        if self.released_at is not None:
            _check_utc(self.released_at, "hold.released_at")
        _check_count(self.records, "hold.records")


@dataclass(frozen=True, slots=True)
class DisposalFact:
    record_id: str
    disposed_at: datetime
    policy_id: str
    tombstone_id: str | None  # the tombstone record; None if none was written

    def __post_init__(self) -> None:
        _check_pseudonym(self.record_id, "r_", "disposal.record_id")
        _check_utc(self.disposed_at, "disposal.disposed_at")
        if self.tombstone_id is not None:
            _check_pseudonym(self.tombstone_id, "r_", "disposal.tombstone_id")


@dataclass(frozen=True, slots=True)
class ErasureFact:
    request_id: str
    subject: str  # s_… pseudonym
    requested_at: datetime
    status: ErasureStatus
    decided_at: datetime | None
    reason: str | None  # a code (legal_hold, retention_obligation, …), required when refused
    note: str = ""  # operator's free text: may name a person, NEVER rendered

    def __post_init__(self) -> None:
        _check_pseudonym(self.subject, "s_", "erasure.subject")
        _check_utc(self.requested_at, "erasure.requested_at")
        if self.decided_at is not None:
            _check_utc(self.decided_at, "erasure.decided_at")
        if self.reason is not None:
            _check_code(self.reason, "erasure.reason")
        if self.status is ErasureStatus.REFUSED and self.reason is None:
            raise FactsError("erasure: a refused erasure needs a reason code")


@dataclass(frozen=True, slots=True)
class ConsentEvent:
    """Opt-in or opt-out of one subject. The service passes the subject's whole history up
    to the period's end, so consent valid at a send inside the period is known."""

    subject: str
    kind: ConsentKind
    at: datetime

    def __post_init__(self) -> None:
        _check_pseudonym(self.subject, "s_", "consent.subject")
        _check_utc(self.at, "consent.at")


@dataclass(frozen=True, slots=True)
class TemplateSend:
    record_id: str
    subject: str
    number: str
    sent_at: datetime
    category: str  # pricing.category from the statuses: marketing, utility, authentication…

    def __post_init__(self) -> None:
        _check_pseudonym(self.record_id, "r_", "template.record_id")
        _check_pseudonym(self.subject, "s_", "template.subject")
        _check_utc(self.sent_at, "template.sent_at")
        _check_code(self.category, "template.category")


@dataclass(frozen=True, slots=True)
class AccessEvent:
    actor: str  # the staff user id (a user of the archive, not a customer)
    role: str
    action: AccessAction
    at: datetime
    detail: str = ""  # query text / export scope: may name a customer, NEVER rendered

    def __post_init__(self) -> None:
        _check_utc(self.at, "access.at")


@dataclass(frozen=True, slots=True)
class RefusedRequest:
    actor: str  # user id, or "anonymous"
    code: str  # the error code answered (forbidden, scope_denied, …)
    count: int

    def __post_init__(self) -> None:
        _check_code(self.code, "refused.code")
        _check_count(self.count, "refused.count")


@dataclass(frozen=True, slots=True)
class AccessFacts:
    events: tuple[AccessEvent, ...] = ()
    sign_in_failures: int = 0
    refused: tuple[RefusedRequest, ...] = ()
    # Failed sign-ins by reason (token_missing, token_invalid, token_expired, …): the
    # security events' aggregates, never the token presented. Sums to ``sign_in_failures``.
    sign_in_by_reason: tuple[RefusedRequest, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckpointFact:
    size: int
    root_hash: str  # lowercase hex SHA-256
    note: str = ""  # the signed note text (C2SP signed-note), as stored

    def __post_init__(self) -> None:
        _check_count(self.size, "checkpoint.size")
        if not _HEX64.match(self.root_hash):
            raise FactsError("checkpoint.root_hash must be 64 lowercase hex digits")


@dataclass(frozen=True, slots=True)
class VerifyFinding:
    code: str
    object_key: str  # what it names: an object key or record id (pseudonymous)
    version_id: str = ""  # the object version, when the finding names one

    def __post_init__(self) -> None:
        _check_code(self.code, "verify.code")


@dataclass(frozen=True, slots=True)
class VerifySweep:
    finished_at: datetime
    objects_checked: int
    findings: tuple[VerifyFinding, ...] = ()
    # How many findings the sweep had, when ``findings`` lists only the first of them
    # (the sweep records a bounded list); None: ``findings`` is all of them.
    total_findings: int | None = None
    # Findings per kind as the sweep counted them (all, not only those listed).
    by_kind: tuple[RefusedRequest, ...] = ()
    # In a report over some numbers: the sweep's findings that could not be tied to one of
    # them (an object no longer readable, the tree, another number's object). Counted
    # here, never listed: they are archive-wide, not the scope's.
    unattributed: int = 0

    def __post_init__(self) -> None:
        _check_utc(self.finished_at, "verify.finished_at")
        _check_count(self.objects_checked, "verify.objects_checked")
        if self.total_findings is not None and self.total_findings < len(self.findings):
            raise FactsError("verify.total_findings is less than the findings listed")
        _check_count(self.unattributed, "verify.unattributed")

    @property
    def finding_count(self) -> int:
        return len(self.findings) if self.total_findings is None else self.total_findings


@dataclass(frozen=True, slots=True)
class IntegrityFacts:
    checkpoint: CheckpointFact  # the checkpoint the report covers (pinned tree size)
    previous: CheckpointFact | None  # the previous report's checkpoint
    consistency: Consistency
    verify: VerifySweep | None  # the last verify sweep; None if none ever ran


@dataclass(frozen=True, slots=True)
class HistoryPhase:
    number: str
    phase: int  # Meta's history sync phase (0, 1, 2)
    completed: bool
    progress: int  # percent, 0..100
    chunks: int = 0  # history chunks (webhooks) of this phase seen
    state: str = ""  # the number's history state: in_progress, declined, failed, complete

    def __post_init__(self) -> None:
        if not 0 <= self.progress <= 100:
            raise FactsError("history.progress must be 0..100")


@dataclass(frozen=True, slots=True)
class NumberWatch:
    number: str
    max_silence_seconds: int  # longer without any record than this is "silent"

    def __post_init__(self) -> None:
        if self.max_silence_seconds <= 0:
            raise FactsError("watch.max_silence_seconds must be positive")


@dataclass(frozen=True, slots=True)
class CompletenessFacts:
    orphan_statuses: tuple[str, ...] = ()  # m_… refs of statuses with no known message
    history: tuple[HistoryPhase, ...] = ()
    watches: tuple[NumberWatch, ...] = ()  # numbers with a silence threshold
    overdue_disposals: tuple[str, ...] = ()  # r_… past retain-until, no hold, not disposed

    def __post_init__(self) -> None:
        for ref in self.orphan_statuses:
            _check_pseudonym(ref, "m_", "completeness.orphan_statuses")
        for rid in self.overdue_disposals:
            _check_pseudonym(rid, "r_", "completeness.overdue_disposals")


@dataclass(frozen=True, slots=True)
class ComplianceFacts:
    """Statements about the deployment that regulation sections need (from settings)."""

    second_copy: bool = False  # a backup recordkeeping system kept apart (17a-4(f)(2)(v))
    second_copy_location: str = ""  # e.g. "s3://archive-dr (eu-west-1)"
    # "third_party" or "executive_officer" (17a-4(f)(3)(iii), as amended in 2022)
    designated_party: str = ""
    # the written undertaking filed with the designated examining authority: its
    # reference, not a person's name
    designated_party_ref: str = ""
    designated_party_accesses: int = 0  # exports by the designated party's role
    processing_record_ref: str = ""  # GDPR Art. 30 record of processing: document + version
    audit_log_retention_days: int = 0  # ARCHIVER_LOG_RETENTION_DAYS (HIPAA documentation)


@dataclass(frozen=True, slots=True)
class ReportFacts:
    scope: Scope
    policies: tuple[PolicyInForce, ...]
    records: tuple[RecordFact, ...]
    raw_captures: int
    media: tuple[MediaFact, ...]
    lock_check: LockCheck
    holds: tuple[HoldFact, ...]
    disposals: tuple[DisposalFact, ...]
    erasures: tuple[ErasureFact, ...]
    consent_events: tuple[ConsentEvent, ...]
    template_sends: tuple[TemplateSend, ...]
    access: AccessFacts
    integrity: IntegrityFacts
    completeness: CompletenessFacts
    compliance: ComplianceFacts = field(default_factory=ComplianceFacts)
    # Lock checks of the other locked objects: raw capture batches, media blobs, audit
    # objects (one LockCheck per kind; ``lock_check`` above is the records').
    object_lock_checks: tuple[LockCheck, ...] = ()
    # The records as aggregates (large archives); then ``records`` is empty. Either way the
    # numbers come from a summary: ``reports.findings.record_summary``.
    summary: RecordSummary | None = None
    # In a report over some numbers: disposals whose leaves name no business number (made
    # before disposal leaves carried one), so not attributed to this scope nor listed.
    disposals_number_unknown: int = 0

    def __post_init__(self) -> None:
        _check_count(self.raw_captures, "raw_captures")
        _check_count(self.disposals_number_unknown, "disposals_number_unknown")
        kinds = [c.kind for c in (self.lock_check, *self.object_lock_checks)]
        if len(set(kinds)) != len(kinds):
            raise FactsError("lock checks: one per kind of object")
        if self.summary is not None and self.records:
            raise FactsError("records and summary: give one, not both")

    def to_dict(self) -> dict[str, Any]:
        return {"schema": FACTS_SCHEMA, **codec.encode(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReportFacts:
        """Inverse of ``to_dict``. Raises ``FactsError`` naming the first bad field."""
        if data.get("schema") != FACTS_SCHEMA:
            raise FactsError(f"facts schema must be {FACTS_SCHEMA!r}")
        body = {k: v for k, v in data.items() if k != "schema"}
        return codec.decode(cls, body, "facts")
