"""Regulation-specific sections as structured data (pure code).

Each item cites the rule, states what the archive shows for it, and is ``met`` when the
figures and findings support it, ``exception`` when a finding contradicts it, or ``info``
when the rule asks for a statement rather than a check. The figures are taken from the
report's sections, so the pages and the twin never disagree.

Sources: FINRA Rule 4511; SEC Rule 17a-4(b)(4), (f)(2), (f)(3)(iii), (f)(3)(v) as amended
(Release 34-96034, 2022); HIPAA 45 CFR 164.312(b), (c)(1), (d) and 164.316(b)(2)(i);
GDPR Art. 5(1)(e), 17 and 30.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reports.facts import LockMode, Regulation, ReportFacts

# Minimum retention in days that the rule itself sets for the archived communications.
MIN_RETAIN_DAYS: Mapping[Regulation, int] = {
    Regulation.FINRA: 6 * 365,  # FINRA 4511(b): six years where SEA 17a-4 names no period
    Regulation.HIPAA: 6 * 365,  # 164.316(b)(2)(i): six years from creation
    Regulation.GDPR: 0,  # no minimum: storage limitation caps, it does not floor
}

_RETENTION = ("retention.lock_missing", "retention.lock_shorter_than_policy",
              "retention.lock_mode_weaker")
_INTEGRITY = ("integrity.consistency_failed", "integrity.consistency_not_checked",
              "integrity.verify_findings", "integrity.verify_never_ran")


def _item(ref: str, title: str, statement: str, figures: Mapping[str, Any],
          related: Sequence[str], present: Sequence[str], *, info: bool = False,
          ok: bool = True) -> dict[str, Any]:
    hit = sorted(c for c in related if c in present)
    status = "info" if info else ("met" if ok and not hit else "exception")
    return {"ref": ref, "title": title, "status": status, "statement": statement,
            "figures": dict(sorted(figures.items())), "findings": hit}


def regulation_items(facts: ReportFacts, s: Mapping[str, Any],
                     codes: Sequence[str]) -> list[dict[str, Any]]:
    reg = facts.scope.regulation
    if reg is Regulation.FINRA:
        return _finra(facts, s, codes)
    if reg is Regulation.HIPAA:
        return _hipaa(facts, s, codes)
    return _gdpr(facts, s, codes)


def _short_policies(facts: ReportFacts) -> list[str]:
    floor = MIN_RETAIN_DAYS[facts.scope.regulation]
    return sorted(p.policy_id for p in facts.policies if p.retain_days < floor)


def _finra(facts: ReportFacts, s: Mapping[str, Any], codes: Sequence[str]) -> list[dict[str, Any]]:
    ret = s["retention"]
    comp = facts.compliance
    short = _short_policies(facts)
    all_compliance = all(p.lock_mode is LockMode.COMPLIANCE for p in facts.policies)
    return [
        _item("SEC 17a-4(f)(2)(i)(A)", "Non-rewriteable, non-erasable storage",
              "Records are stored under S3 Object Lock; the lock state was read from the "
              "store itself, not from the index.",
              {"lock_check_mode": ret["check_mode"], "objects_read": ret["read"],
               "objects_in_period": ret["population"], "exceptions": ret["exceptions"],
               "policies_in_compliance_mode": sum(
                   p.lock_mode is LockMode.COMPLIANCE for p in facts.policies)},
              _RETENTION, codes, ok=all_compliance),
        _item("SEC 17a-4(f)(2)(i)(B)", "Verification of the recording process",
              "Every object is logged in an RFC 6962 Merkle log; the checkpoint below is "
              "consistent with the previous report's and the last verify sweep re-read the "
              "archive.",
              {"checkpoint_size": s["integrity"]["checkpoint_size"],
               "verify_objects_checked": s["integrity"]["verify_objects_checked"],
               "verify_findings": s["integrity"]["verify_findings"]},
              _INTEGRITY, codes),
        _item("SEC 17a-4(f)(3)(iii)", "A second copy, stored separately",
              "A replicated second copy is kept in a separate location." if comp.second_copy
              else "No separately stored second copy is configured.",
              {"second_copy": "yes" if comp.second_copy else "no",
               "second_copy_location": comp.second_copy_location or "none"},
              (), codes, ok=comp.second_copy),
        _item("FINRA 4511(b) / SEC 17a-4(b)(4)", "Retention periods",
              "Each policy in force keeps records at least six years.",
              {"policies": len(facts.policies), "policies_below_minimum": len(short),
               "minimum_days": MIN_RETAIN_DAYS[Regulation.FINRA]},
              _RETENTION, codes, ok=not short),
        _item("SEC 17a-4(f)(3)(v)", "Designated third party or designated executive officer",
              "The designated party's undertaking is on file and it holds archive access."
              if comp.designated_party else "No designated party is recorded.",
              {"designated_party": comp.designated_party or "none",
               "undertaking_ref": comp.designated_party_ref or "none",
               "exports_by_designated_party": comp.designated_party_accesses},
              (), codes, ok=bool(comp.designated_party)),
    ]


def _hipaa(facts: ReportFacts, s: Mapping[str, Any], codes: Sequence[str]) -> list[dict[str, Any]]:
    acc = s["access"]
    short = _short_policies(facts)
    return [
        _item("164.312(b)", "Audit controls",
              "Every search, view and export is recorded in the audit trail; the access "
              "section summarises it per user.",
              {"searches": acc["totals"]["search"], "views": acc["totals"]["view"],
               "exports": acc["totals"]["export"], "users": len(acc["by_actor"])},
              (), codes, info=True),
        _item("164.312(c)(1)", "Integrity",
              "ePHI is protected from improper alteration by object locks and a Merkle log "
              "whose consistency and contents were verified.",
              {"checkpoint_size": s["integrity"]["checkpoint_size"],
               "consistency": s["integrity"]["consistency"],
               "lock_exceptions": s["retention"]["exceptions"]},
              (*_INTEGRITY, *_RETENTION), codes),
        _item("164.312(d)", "Person or entity authentication",
              "Failed sign-ins and refused requests in the period.",
              {"sign_in_failures": acc["sign_in_failures"],
               "refused_requests": acc["refused_requests"]},
              (), codes, info=True),
        _item("164.316(b)(2)(i)", "Documentation retention (six years)",
              "Each policy in force keeps records at least six years.",
              {"policies": len(facts.policies), "policies_below_minimum": len(short),
               "minimum_days": MIN_RETAIN_DAYS[Regulation.HIPAA]},
              _RETENTION, codes, ok=not short),
    ]


def _gdpr(facts: ReportFacts, s: Mapping[str, Any], codes: Sequence[str]) -> list[dict[str, Any]]:
    er = s["erasures"]
    comp = facts.compliance
    return [
        _item("Art. 5(1)(e)", "Storage limitation",
              "Records are disposed of when their retention ends, unless held; each disposal "
              "leaves a tombstone.",
              {"disposed": s["disposals"]["disposed"], "overdue": s["disposals"]["overdue"],
               "holds_active_at_end": s["holds"]["active_at_end"]},
              ("retention.disposal_overdue", "disposal.no_tombstone"), codes),
        _item("Art. 17", "Right to erasure",
              "Erasure destroys the subject's key (crypto-shredding); refusals name a reason.",
              {"requested": er["requested"], "completed": er["completed"],
               "refused": er["refused"], "pending": er["pending"]},
              ("erasure.refused",), codes),
        _item("Art. 30", "Record of processing activities",
              "The record of processing is kept as the document named here; the policies in "
              "force are listed above with their versions.",
              {"record_of_processing": comp.processing_record_ref or "none",
               "policies_in_force": len(facts.policies)},
              (), codes, ok=bool(comp.processing_record_ref)),
    ]
