"""Findings: what a report lists as violations or gaps (pure code, deterministic).

One finding per code, naming every record (``r_…``), subject (``s_…``) and object key
involved; never a name, a phone number or content. Codes are stable (``area.what``) and
documented in ``docs/reports.md``.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from reports.errors import FactsError
from reports.facts import (
    ConsentKind,
    Consistency,
    ErasureStatus,
    LockMode,
    LockObservation,
    MediaState,
    NumberActivity,
    Period,
    RecordCount,
    RecordFact,
    RecordSummary,
    ReportFacts,
)


class Severity(StrEnum):
    CRITICAL = "critical"  # evidence may be lost or altered
    HIGH = "high"  # a rule was broken
    MEDIUM = "medium"  # capture or process gap to explain


class Code(StrEnum):
    """Stable finding codes (``area.what``); never renamed, only added."""

    MARKETING_AFTER_OPT_OUT = "consent.marketing_after_opt_out"
    MARKETING_WITHOUT_OPT_IN = "consent.marketing_without_opt_in"
    LOCK_MISSING = "retention.lock_missing"
    LOCK_SHORTER = "retention.lock_shorter_than_policy"
    LOCK_MODE_WEAKER = "retention.lock_mode_weaker"
    DISPOSAL_OVERDUE = "retention.disposal_overdue"
    DISPOSAL_NO_TOMBSTONE = "disposal.no_tombstone"
    ERASURE_REFUSED = "erasure.refused"
    MEDIA_NOT_FETCHED = "completeness.media_not_fetched"
    ORPHAN_STATUS = "completeness.status_without_message"
    HISTORY_INCOMPLETE = "completeness.history_sync_incomplete"
    SILENT_NUMBER = "completeness.silent_number"
    CONSISTENCY_FAILED = "integrity.consistency_failed"
    CONSISTENCY_MISSING = "integrity.consistency_not_checked"
    VERIFY_FINDINGS = "integrity.verify_findings"
    VERIFY_NEVER_RAN = "integrity.verify_never_ran"


SEVERITY: Mapping[Code, Severity] = {
    Code.MARKETING_AFTER_OPT_OUT: Severity.HIGH,
    Code.MARKETING_WITHOUT_OPT_IN: Severity.HIGH,
    Code.LOCK_MISSING: Severity.CRITICAL,
    Code.LOCK_SHORTER: Severity.CRITICAL,
    Code.LOCK_MODE_WEAKER: Severity.HIGH,
    Code.DISPOSAL_OVERDUE: Severity.HIGH,
    Code.DISPOSAL_NO_TOMBSTONE: Severity.HIGH,
    Code.ERASURE_REFUSED: Severity.MEDIUM,
    Code.MEDIA_NOT_FETCHED: Severity.MEDIUM,
    Code.ORPHAN_STATUS: Severity.MEDIUM,
    Code.HISTORY_INCOMPLETE: Severity.MEDIUM,
    Code.SILENT_NUMBER: Severity.MEDIUM,
    Code.CONSISTENCY_FAILED: Severity.CRITICAL,
    Code.CONSISTENCY_MISSING: Severity.HIGH,
    Code.VERIFY_FINDINGS: Severity.CRITICAL,
    Code.VERIFY_NEVER_RAN: Severity.HIGH,
}

TITLE: Mapping[Code, str] = {
    Code.MARKETING_AFTER_OPT_OUT: "Marketing template sent after the subject opted out",
    Code.MARKETING_WITHOUT_OPT_IN: "Marketing template sent without a prior opt-in",
    Code.LOCK_MISSING: "Object has no retention lock in the store",
    Code.LOCK_SHORTER: "Object lock ends before the policy's retain-until",
    Code.LOCK_MODE_WEAKER: "Object locked in GOVERNANCE where the policy requires COMPLIANCE",
    Code.DISPOSAL_OVERDUE: "Records past retention, not held and not disposed",
    Code.DISPOSAL_NO_TOMBSTONE: "Disposal without a tombstone record",
    Code.ERASURE_REFUSED: "Erasure request refused",
    Code.MEDIA_NOT_FETCHED: "Media never fetched",
    Code.ORPHAN_STATUS: "Statuses with no known message",
    Code.HISTORY_INCOMPLETE: "History sync phase not completed",
    Code.SILENT_NUMBER: "Number silent longer than expected",
    Code.CONSISTENCY_FAILED: "Log not consistent with the previous report's checkpoint",
    Code.CONSISTENCY_MISSING: "Consistency with the previous report's checkpoint not checked",
    Code.VERIFY_FINDINGS: "The last verify sweep found problems",
    Code.VERIFY_NEVER_RAN: "No verify sweep has run",
}


@dataclass(frozen=True, slots=True)
class Finding:
    code: Code
    severity: Severity
    title: str
    count: int
    record_ids: tuple[str, ...] = ()  # r_… ids, sorted
    subjects: tuple[str, ...] = ()  # s_… pseudonyms, sorted
    refs: tuple[str, ...] = ()  # other pseudonymous names: object keys, m_… refs, numbers
    detail: tuple[tuple[str, str], ...] = ()  # (key, value) pairs, sorted by key

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "severity": self.severity.value,
            "title": self.title,
            "count": self.count,
            "record_ids": list(self.record_ids),
            "subjects": list(self.subjects),
            "refs": list(self.refs),
            "detail": dict(self.detail),
        }


def _finding(
    code: Code,
    *,
    count: int,
    record_ids: Iterable[str] = (),
    subjects: Iterable[str] = (),
    refs: Iterable[str] = (),
    detail: Mapping[str, str] | None = None,
) -> Finding:
    return Finding(
        code=code,
        severity=SEVERITY[code],
        title=TITLE[code],
        count=count,
        record_ids=tuple(sorted(set(record_ids))),
        subjects=tuple(sorted(set(subjects))),
        refs=tuple(sorted(set(refs))),
        detail=tuple(sorted((detail or {}).items())),
    )


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def counts(values: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def records_in_period(facts: ReportFacts) -> list[RecordFact]:
    period = facts.scope.period
    return [r for r in facts.records if period.contains(r.occurred_at)]


def summarise(records: Iterable[RecordFact], period: Period) -> RecordSummary:
    """The aggregate of per-record facts (the records of ``period`` only): what the
    gatherer computes with index aggregations on large archives. Exact gaps (resolution
    0), since every record's time is known here."""
    cells: Counter[tuple[str, str, str, str, datetime]] = Counter()
    times: dict[str, list[datetime]] = defaultdict(list)
    for r in records:
        if not period.contains(r.occurred_at):
            continue
        at = r.occurred_at.astimezone(UTC)
        day = datetime(at.year, at.month, at.day, tzinfo=UTC)
        cells[(r.kind, r.origin._value_, r.direction._value_, r.number, day)] += 1
        times[r.number].append(at)
    activity = []
    for number, ts in sorted(times.items()):
        ts.sort()
        gap = max(((b - a, a, b) for a, b in itertools.pairwise(ts)), default=None)
        activity.append(NumberActivity(
            number, ts[0], ts[-1], gap[1] if gap else None, gap[2] if gap else None, 0))
    return summary_of(cells, activity)


def summary_of(cells: Mapping[tuple[str, str, str, str, datetime], int],
               activity: Iterable[NumberActivity]) -> RecordSummary:
    """A canonical summary: counts sorted by their key, activity by number."""
    from reports.facts import Direction, Origin

    return RecordSummary(
        counts=tuple(RecordCount(k, Origin(o), Direction(d), n, day, c)
                     for (k, o, d, n, day), c in sorted(cells.items()) if c),
        activity=tuple(sorted(activity, key=lambda a: a.number)),
    )


def record_summary(facts: ReportFacts) -> RecordSummary:
    """The records as counts and activity: given by the gatherer, or summed from the
    per-record facts. Every inventory and chart number and silence come from this."""
    if facts.summary is not None:
        return facts.summary
    return summarise(facts.records, facts.scope.period)


def finding_counts(findings: Sequence[Finding]) -> dict[str, int]:
    return {s.value: sum(f.severity is s for f in findings) for s in Severity}


# --- findings -------------------------------------------------------------------------


ConsentHistories = dict[str, tuple[list[datetime], list[ConsentKind]]]


def consent_at(histories: ConsentHistories, subject: str, at: datetime) -> str:
    """"ok", "opted_out" or "never_opted_in" for ``subject`` at ``at``. An event at the
    same instant as the send counts (an opt-out received as the send left is honoured)."""
    times, kinds = histories.get(subject, ([], []))
    i = bisect.bisect_right(times, at)
    if i == 0:
        return "never_opted_in"
    return "ok" if kinds[i - 1] is ConsentKind.OPT_IN else "opted_out"


def consent_histories(facts: ReportFacts) -> ConsentHistories:
    out: ConsentHistories = {}
    # Opt-out sorts after opt-in at the same instant: the stricter one wins.
    for c in sorted(facts.consent_events, key=lambda c: (c.subject, c.at, c.kind.value)):
        times, kinds = out.setdefault(c.subject, ([], []))
        times.append(c.at)
        kinds.append(c.kind)
    return out


def consent_findings(facts: ReportFacts) -> list[Finding]:
    period = facts.scope.period
    histories = consent_histories(facts)
    after_out: list[tuple[str, str]] = []
    no_in: list[tuple[str, str]] = []
    for t in facts.template_sends:
        if t.category != "marketing" or not period.contains(t.sent_at):
            continue
        state = consent_at(histories, t.subject, t.sent_at)
        if state == "never_opted_in":
            no_in.append((t.record_id, t.subject))
        elif state == "opted_out":
            after_out.append((t.record_id, t.subject))
    out = []
    for code, items in ((Code.MARKETING_AFTER_OPT_OUT, after_out),
                        (Code.MARKETING_WITHOUT_OPT_IN, no_in)):
        if items:
            out.append(_finding(code, count=len(items), record_ids=[r for r, _ in items],
                                subjects=[s for _, s in items]))
    return out


def lock_problem(o: LockObservation) -> Code | None:
    if o.observed_mode is None or o.observed_retain_until is None:
        return Code.LOCK_MISSING
    if o.observed_retain_until < o.required_retain_until:
        return Code.LOCK_SHORTER
    if o.required_mode is LockMode.COMPLIANCE and o.observed_mode is not LockMode.COMPLIANCE:
        return Code.LOCK_MODE_WEAKER
    return None


def retention_findings(facts: ReportFacts) -> list[Finding]:
    by_code: dict[Code, list[Any]] = defaultdict(list)
    # Every kind of locked object: records, raw batches, media blobs, audit objects.
    for check in (facts.lock_check, *facts.object_lock_checks):
        for o in check.observations:
            code = lock_problem(o)
            if code is not None:
                by_code[code].append(o)
    out = []
    for code, obs in sorted(by_code.items()):
        detail = {}
        if code is Code.LOCK_SHORTER:
            worst = max(o.required_retain_until - o.observed_retain_until for o in obs)
            detail["max_shortfall_days"] = str(worst.days + (1 if worst.seconds else 0))
        out.append(_finding(
            code, count=len(obs), record_ids=[o.record_id for o in obs if o.record_id],
            refs=[o.object_key for o in obs], detail=detail,
        ))
    overdue = facts.completeness.overdue_disposals
    if overdue:
        out.append(_finding(Code.DISPOSAL_OVERDUE, count=len(overdue), record_ids=overdue))
    missing = [d for d in facts.disposals if d.tombstone_id is None]
    if missing:
        out.append(_finding(Code.DISPOSAL_NO_TOMBSTONE, count=len(missing),
                            record_ids=[d.record_id for d in missing]))
    return out


def erasure_findings(facts: ReportFacts) -> list[Finding]:
    refused = [e for e in facts.erasures if e.status is ErasureStatus.REFUSED]
    if not refused:
        return []
    reasons = counts(e.reason or "" for e in refused)
    return [_finding(
        Code.ERASURE_REFUSED, count=len(refused), subjects=[e.subject for e in refused],
        refs=[e.request_id for e in refused],
        detail={f"reason:{k}": str(v) for k, v in reasons.items()},
    )]


def silent_numbers(facts: ReportFacts) -> list[tuple[str, int, datetime]]:
    """(number, longest gap in seconds, gap start) for each watched number whose longest
    stretch without a record inside the period exceeds its threshold. The period's start
    and end bound the gaps, so a number with no record at all is silent for the period.
    An inner stretch is known exactly when longer than the summary's resolution; the
    gatherer keeps that resolution at or below every threshold (a FactsError if not)."""
    period = facts.scope.period
    by_number = {a.number: a for a in record_summary(facts).activity}
    out = []
    for w in sorted(facts.completeness.watches, key=lambda w: w.number):
        a = by_number.get(w.number)
        if a is None:
            gaps = [(period.end - period.start, period.start)]
        else:
            if a.resolution_seconds > w.max_silence_seconds:
                raise FactsError(f"activity of {w.number}: resolution above the threshold")
            gaps = [(a.first_at - period.start, period.start), (period.end - a.last_at, a.last_at)]
            if a.gap_start is not None and a.gap_end is not None:
                gaps.append((a.gap_end - a.gap_start, a.gap_start))
        gap, start = max(gaps)
        seconds = int(gap.total_seconds())
        if seconds > w.max_silence_seconds:
            out.append((w.number, seconds, start))
    return out


def completeness_findings(facts: ReportFacts) -> list[Finding]:
    out = []
    missing = [m for m in facts.media if m.state is MediaState.MISSING]
    if missing:
        out.append(_finding(Code.MEDIA_NOT_FETCHED, count=len(missing),
                            record_ids=[m.record_id for m in missing],
                            refs=[m.media_ref for m in missing]))
    orphans = facts.completeness.orphan_statuses
    if orphans:
        out.append(_finding(Code.ORPHAN_STATUS, count=len(orphans), refs=orphans))
    incomplete = [h for h in facts.completeness.history if not h.completed]
    if incomplete:
        out.append(_finding(
            Code.HISTORY_INCOMPLETE, count=len(incomplete),
            refs=[f"{h.number}:phase{h.phase}" for h in incomplete],
            detail={f"{h.number}:phase{h.phase}": f"{h.progress}%" for h in incomplete},
        ))
    silent = silent_numbers(facts)
    if silent:
        out.append(_finding(
            Code.SILENT_NUMBER, count=len(silent), refs=[n for n, _, _ in silent],
            detail={n: f"{s}s from {iso(at)}" for n, s, at in silent},
        ))
    return out


def integrity_findings(facts: ReportFacts) -> list[Finding]:
    i = facts.integrity
    out = []
    if i.consistency is Consistency.FAILED:
        out.append(_finding(Code.CONSISTENCY_FAILED, count=1, detail={
            "previous_size": str(i.previous.size if i.previous else 0),
            "size": str(i.checkpoint.size)}))
    elif i.consistency is Consistency.NOT_CHECKED or (
        i.consistency is Consistency.FIRST_REPORT and i.previous is not None
    ):
        out.append(_finding(Code.CONSISTENCY_MISSING, count=1))
    if i.verify is None:
        out.append(_finding(Code.VERIFY_NEVER_RAN, count=1))
    elif i.verify.finding_count or i.verify.unattributed:
        v = i.verify
        by_kind = ({r.code: r.count for r in v.by_kind} if v.by_kind
                   else counts(f.code for f in v.findings))
        detail = {f"code:{k}": str(n) for k, n in sorted(by_kind.items())}
        if v.unattributed:  # a scoped report: the sweep's other findings, not named here
            detail["archive_wide"] = str(v.unattributed)
        out.append(_finding(
            Code.VERIFY_FINDINGS, count=v.finding_count + v.unattributed,
            refs=[f.object_key for f in v.findings], detail=detail,
        ))
    return out
