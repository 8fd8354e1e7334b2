"""Facts → the report's numbers and findings (pure code, no I/O, deterministic).

``compute_report(facts)`` is the one entry point. Every number is an integer or a string
(no floats, so the twin is canonical); every list is sorted; findings (``findings``) name
records by id and subjects by pseudonym only.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from reports.facts import (
    AccessAction,
    ConsentKind,
    ErasureStatus,
    LockCheck,
    MediaState,
    Regulation,
    ReportFacts,
)
from reports.findings import (
    Finding,
    Severity,
    completeness_findings,
    consent_at,
    consent_findings,
    consent_histories,
    counts,
    erasure_findings,
    finding_counts,
    integrity_findings,
    iso,
    lock_problem,
    record_summary,
    retention_findings,
    silent_numbers,
)
from reports.regulations import regulation_items

__all__ = ["Report", "compute_report"]


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the twin and the pages show. ``sections`` is plain JSON (ints, strings,
    lists, objects); ``findings`` are sorted by severity then code."""

    regulation: Regulation
    sections: Mapping[str, Any]
    findings: tuple[Finding, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "regulation": self.regulation.value,
            **self.sections,
            "findings": [f.to_dict() for f in self.findings],
        }


def compute_report(facts: ReportFacts) -> Report:
    """The report for ``facts``: same facts, same report (no clock, no randomness)."""
    findings = [
        *consent_findings(facts),
        *retention_findings(facts),
        *erasure_findings(facts),
        *completeness_findings(facts),
        *integrity_findings(facts),
    ]
    order = list(Severity)
    findings.sort(key=lambda f: (order.index(f.severity), f.code.value))
    sections: dict[str, Any] = {
        "scope": _scope(facts),
        "checkpoint": {
            "size": facts.integrity.checkpoint.size,
            "root_hash": facts.integrity.checkpoint.root_hash,
            # The signed note, so verify-report checks it against the log's public key
            # without asking the archive.
            "note": facts.integrity.checkpoint.note,
        },
        "policies": [
            {
                "policy_id": p.policy_id,
                "version": p.version,
                "retain_days": p.retain_days,
                "lock_mode": p.lock_mode.value,
            }
            for p in sorted(facts.policies, key=lambda p: (p.policy_id, p.version))
        ],
        "inventory": inventory(facts),
        "retention": retention(facts),
        "holds": holds(facts),
        "disposals": disposals(facts),
        "erasures": erasures(facts),
        "consent": consent(facts),
        "daily": daily(facts),
        "access": access(facts),
        "integrity": integrity(facts),
        "completeness": completeness(facts),
        "finding_counts": finding_counts(findings),
    }
    sections["regulation_items"] = regulation_items(facts, sections, [f.code for f in findings])
    return Report(regulation=facts.scope.regulation, sections=sections, findings=tuple(findings))


# --- sections -------------------------------------------------------------------------


def _scope(facts: ReportFacts) -> dict[str, Any]:
    s = facts.scope
    return {
        "archive": s.archive,
        "regulation": s.regulation.value,
        "period_start": iso(s.period.start),
        "period_end": iso(s.period.end),
        "numbers": sorted(s.numbers),
    }



def _days(start: datetime, end: datetime) -> list[str]:
    first = start.astimezone(UTC).date()
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]



def inventory(facts: ReportFacts) -> dict[str, Any]:
    cells = record_summary(facts).counts

    def by(attr: str) -> dict[str, int]:
        out: Counter[str] = Counter()
        for c in cells:
            value = getattr(c, attr)
            out[value._value_ if isinstance(value, StrEnum) else value] += c.count
        return dict(sorted(out.items()))

    return {
        "records": sum(c.count for c in cells),
        "by_kind": by("kind"),
        "by_origin": by("origin"),
        "by_direction": by("direction"),
        "by_number": by("number"),
        "raw_captures": facts.raw_captures,
        "media": {
            "total": len(facts.media),
            "fetched": sum(m.state is MediaState.FETCHED for m in facts.media),
            "missing": sum(m.state is MediaState.MISSING for m in facts.media),
        },
    }


def retention(facts: ReportFacts) -> dict[str, Any]:
    lc = facts.lock_check
    bad = {(o.object_key, o.version_id) for o in lc.observations if lock_problem(o)}
    return {
        "check_mode": lc.mode.value,
        "population": lc.population,
        "read": lc.read,
        "seed": lc.seed or "",
        "compliant": lc.read - len(bad),
        "exceptions": len(bad),
        # Every kind of locked object, each checked the same way against its own required
        # retain-until: records (the figures above), raw batches, media blobs, audit objects.
        "by_kind": [_lock_kind(c) for c in sorted(
            (lc, *facts.object_lock_checks), key=lambda c: LOCK_KIND_ORDER.get(c.kind, 9))],
    }


# The order in which kinds of locked objects are listed.
LOCK_KIND_ORDER = {"record": 0, "raw": 1, "media": 2, "audit": 3}


def _lock_kind(lc: LockCheck) -> dict[str, Any]:
    bad = {(o.object_key, o.version_id) for o in lc.observations if lock_problem(o)}
    return {
        "kind": lc.kind,
        "check_mode": lc.mode.value,
        "population": lc.population,
        "read": lc.read,
        "compliant": lc.read - len(bad),
        "exceptions": len(bad),
        # "archive": the figures cover every number's objects of this kind, not the scope's.
        "coverage": "archive" if lc.archive_wide else "scope",
    }


def holds(facts: ReportFacts) -> dict[str, Any]:
    period = facts.scope.period
    placed = [h for h in facts.holds if period.contains(h.placed_at)]
    released = [h for h in facts.holds if h.released_at and period.contains(h.released_at)]
    active = [
        h
        for h in facts.holds
        if h.placed_at < period.end and (h.released_at is None or h.released_at >= period.end)
    ]
    return {
        "placed": len(placed),
        "released": len(released),
        "active_at_end": len(active),
        "records_held_at_end": sum(h.records for h in active),
    }


def disposals(facts: ReportFacts) -> dict[str, Any]:
    d = facts.disposals
    return {
        "disposed": len(d),
        "with_tombstone": sum(x.tombstone_id is not None for x in d),
        "by_policy": counts(x.policy_id for x in d),
        "overdue": len(facts.completeness.overdue_disposals),
        "number_unknown": facts.disposals_number_unknown,
    }


def erasures(facts: ReportFacts) -> dict[str, Any]:
    e = facts.erasures
    refused = [x for x in e if x.status is ErasureStatus.REFUSED]
    return {
        "requested": len(e),
        "completed": sum(x.status is ErasureStatus.COMPLETED for x in e),
        "pending": sum(x.status is ErasureStatus.PENDING for x in e),
        "refused": len(refused),
        "refused_by_reason": counts(x.reason or "" for x in refused),
    }


def consent(facts: ReportFacts) -> dict[str, Any]:
    period = facts.scope.period
    inside = [c for c in facts.consent_events if period.contains(c.at)]
    sends = [t for t in facts.template_sends if period.contains(t.sent_at)]
    marketing = [t for t in sends if t.category == "marketing"]
    histories = consent_histories(facts)
    return {
        "opt_ins": sum(c.kind is ConsentKind.OPT_IN for c in inside),
        "opt_outs": sum(c.kind is ConsentKind.OPT_OUT for c in inside),
        "template_sends": len(sends),
        "template_by_category": counts(t.category for t in sends),
        "marketing_sends": len(marketing),
        "marketing_without_consent": sum(
            consent_at(histories, t.subject, t.sent_at) != "ok" for t in marketing
        ),
    }


def daily(facts: ReportFacts) -> dict[str, Any]:
    """Per-day series for the charts: records by origin, consent events by kind."""
    period = facts.scope.period
    days = _days(period.start, period.end)
    per_origin: Counter[tuple[str, date]] = Counter()
    for c in record_summary(facts).counts:
        per_origin[(c.origin._value_, c.day.date())] += c.count
    origins = sorted({o for o, _ in per_origin})
    per_kind: Counter[tuple[str, date]] = Counter(
        (c.kind._value_, c.at.date()) for c in facts.consent_events if period.contains(c.at)
    )
    dates = [date.fromisoformat(d) for d in days]
    return {
        "days": days,
        "records_by_origin": {o: [per_origin[(o, d)] for d in dates] for o in origins},
        "consent": {k.value: [per_kind[(k.value, d)] for d in dates] for k in ConsentKind},
    }


def access(facts: ReportFacts) -> dict[str, Any]:
    """Who searched, viewed and exported: counts per actor and action. The events' free
    text (``detail``: queries, export scopes) can name customers and is left out."""
    period = facts.scope.period
    events = [e for e in facts.access.events if period.contains(e.at)]
    rows: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for e in events:
        rows[(e.actor, e.role)][e.action.value] += 1
    return {
        "by_actor": [
            {"actor": actor, "role": role, **{a.value: c[a.value] for a in AccessAction}}
            for (actor, role), c in sorted(rows.items())
        ],
        "totals": {a.value: sum(e.action is a for e in events) for a in AccessAction},
        "sign_in_failures": facts.access.sign_in_failures,
        "refused_requests": sum(r.count for r in facts.access.refused),
        "refused_by_code": _sum_by(facts.access.refused),
        "sign_in_failures_by_reason": _sum_by(facts.access.sign_in_by_reason),
    }


def _sum_by(refused: Sequence[Any]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for r in refused:
        out[r.code] += r.count
    return dict(sorted(out.items()))


def integrity(facts: ReportFacts) -> dict[str, Any]:
    i = facts.integrity
    v = i.verify
    return {
        "checkpoint_size": i.checkpoint.size,
        "checkpoint_root": i.checkpoint.root_hash,
        "previous_size": i.previous.size if i.previous else 0,
        "previous_root": i.previous.root_hash if i.previous else "",
        "consistency": i.consistency.value,
        "verify_finished_at": iso(v.finished_at) if v else "",
        "verify_objects_checked": v.objects_checked if v else 0,
        "verify_findings": v.finding_count if v else 0,
        "verify_findings_unattributed": v.unattributed if v else 0,
        # Per object: which object version each finding names (a bounded list; the count
        # above is all of them), and how many findings of each kind.
        "verify_findings_by_kind": _verify_by_kind(v) if v else {},
        "verify_findings_listed": [
            {"code": f.code, "object": f.object_key, "version_id": f.version_id}
            for f in sorted(v.findings, key=lambda f: (f.code, f.object_key, f.version_id))
        ][:VERIFY_LISTED] if v else [],
    }


VERIFY_LISTED = 100  # findings listed per object in the integrity section (the rest counted)


def _verify_by_kind(v: Any) -> dict[str, int]:
    if v.by_kind:
        return _sum_by(v.by_kind)
    return counts(f.code for f in v.findings)


def completeness(facts: ReportFacts) -> dict[str, Any]:
    c = facts.completeness
    return {
        "orphan_statuses": len(c.orphan_statuses),
        "media_not_fetched": sum(m.state is MediaState.MISSING for m in facts.media),
        "history_phases": len(c.history),
        "history_phases_incomplete": sum(not h.completed for h in c.history),
        # Per number and phase: chunks seen, progress, and whether the phase completed.
        "history": [
            {"number": h.number, "phase": h.phase, "chunks": h.chunks, "progress": h.progress,
             "completed": "yes" if h.completed else "no", "state": h.state or ""}
            for h in sorted(c.history, key=lambda h: (h.number, h.phase))
        ],
        "numbers_watched": len(c.watches),
        "silent_numbers": len(silent_numbers(facts)),
    }

