"""Regulation-specific sections as structured data (pure code).

Each item cites the rule, states what the archive shows for it, and is ``met`` when the
figures and findings support it, ``exception`` when a finding contradicts it, or ``info``
when the rule asks for a statement rather than a check. The figures are taken from the
report's sections, so the pages and the twin never disagree.

Sources: FINRA Rule 4511(b); SEC Rule 17a-4 (17 CFR 240.17a-4) as amended by Release
34-96034 (Oct. 12, 2022; 87 FR 66412, Nov. 3, 2022; compliance date May 3, 2023):

* (f)(2)(i): an electronic recordkeeping system must either (A) keep a complete
  time-stamped audit trail of every modification and deletion that permits re-creation of
  the original record — the audit-trail alternative the 2022 amendments added — or (B)
  preserve the record exclusively in a non-rewriteable, non-erasable format (WORM). The
  archive relies on (B) (S3 Object Lock in COMPLIANCE mode); its Merkle log is evidence
  of integrity, not an (A) audit trail (the locked records are never modified).
* (f)(2)(ii): verify automatically the completeness and accuracy of the processes for
  storing and retaining records electronically.
* (f)(2)(v): a backup electronic recordkeeping system that serves as a redundant set of
  records if the original is temporarily or permanently inaccessible (or other redundant
  data protection).
* (f)(3)(iii): a designated executive officer (a member of senior management with
  reasonable knowledge of the system) or a designated third party, with access to and the
  ability to provide the records, who files the written undertaking with the firm's
  designated examining authority. The third-party route existed before 2022 (formerly
  (f)(3)(vii)); the executive-officer alternative is new in 2022.
* (b)(4): communications relating to the business as such, three years.

HIPAA 45 CFR 164.312(b), (c)(1), (d) and 164.316(b)(2)(i); GDPR Art. 5(1)(e), 17 and 30.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reports.facts import LockMode, Regulation, ReportFacts

# Minimum retention in days per policy of the built-in pack (policies/data) that the rule
# itself sets. Policies not named here are not judged against the rule (GDPR caps
# retention, it sets no floor). Six years is counted as 6 × 365 days.
MIN_RETAIN_DAYS: Mapping[Regulation, Mapping[str, int]] = {
    Regulation.FINRA: {
        "finra_4511": 6 * 365,  # FINRA 4511(b): six years where no other period applies
        "sec_17a4": 3 * 365,  # SEC 17a-4(b)(4): communications, three years
    },
    Regulation.HIPAA: {"hipaa": 6 * 365},  # 164.316(b)(2)(i): six years
    Regulation.GDPR: {},
}
# The audit trail (log objects) is HIPAA documentation too: ARCHIVER_LOG_RETENTION_DAYS.
HIPAA_AUDIT_LOG_MIN_DAYS = 2192  # six years including up to two leap days

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


def _judged_policies(facts: ReportFacts) -> tuple[int, int]:
    """(policies judged, of which below the rule's minimum)."""
    floors = MIN_RETAIN_DAYS[facts.scope.regulation]
    judged = [p for p in facts.policies if p.policy_id in floors]
    return len(judged), sum(p.retain_days < floors[p.policy_id] for p in judged)


def _finra(facts: ReportFacts, s: Mapping[str, Any], codes: Sequence[str]) -> list[dict[str, Any]]:
    ret = s["retention"]
    comp = facts.compliance
    judged, short = _judged_policies(facts)
    all_compliance = all(p.lock_mode is LockMode.COMPLIANCE for p in facts.policies)
    return [
        _item("SEC 17a-4(f)(2)(i)(B)", "Non-rewriteable, non-erasable format",
              ("Records are preserved under S3 Object Lock in COMPLIANCE mode (the "
               "non-rewriteable, non-erasable route of (f)(2)(i)(B), not the audit-trail "
               "alternative of (f)(2)(i)(A)); the lock state was read from the store "
               "itself, not from the index." if all_compliance else
               "Not every policy locks in COMPLIANCE mode: a GOVERNANCE lock can be lifted "
               "by a privileged user, so those records are not non-erasable under "
               "(f)(2)(i)(B)."),
              {"lock_check_mode": ret["check_mode"], "objects_read": ret["read"],
               "objects_in_period": ret["population"], "exceptions": ret["exceptions"],
               "policies_in_compliance_mode": sum(
                   p.lock_mode is LockMode.COMPLIANCE for p in facts.policies)},
              _RETENTION, codes, ok=all_compliance),
        _item("SEC 17a-4(f)(2)(ii)",
              "Automatic verification of the completeness and accuracy of storage and "
              "retention",
              "Every object is logged in an RFC 6962 Merkle log; the checkpoint below is "
              "consistent with the previous report's and the last verify sweep re-read the "
              "archive.",
              {"checkpoint_size": s["integrity"]["checkpoint_size"],
               "verify_objects_checked": s["integrity"]["verify_objects_checked"],
               "verify_findings": s["integrity"]["verify_findings"]},
              _INTEGRITY, codes),
        _item("SEC 17a-4(f)(2)(v)", "Backup recordkeeping system (second copy)",
              "A backup copy kept in a separate location serves as a redundant set of "
              "records if the original system is inaccessible." if comp.second_copy
              else "No backup recordkeeping system (separately stored second copy) is "
              "configured.",
              {"second_copy": "yes" if comp.second_copy else "no",
               "second_copy_location": comp.second_copy_location or "none"},
              (), codes, ok=comp.second_copy),
        _item("FINRA 4511(b), SEC 17a-4(b)(4)", "Retention periods",
              "Policy finra_4511 keeps records at least six years, sec_17a4 at least three.",
              {"policies_judged": judged, "policies_below_minimum": short},
              _RETENTION, codes, ok=short == 0),
        _item("SEC 17a-4(f)(3)(iii)", "Designated executive officer or designated third party",
              _designated_statement(comp.designated_party, comp.designated_party_ref),
              {"designated_party": comp.designated_party or "none",
               "undertaking_ref": comp.designated_party_ref or "none",
               "exports_by_designated_party": comp.designated_party_accesses},
              (), codes,
              ok=comp.designated_party in DESIGNATED_PARTIES and bool(comp.designated_party_ref)),
    ]


DESIGNATED_PARTIES = {
    "executive_officer": "a designated executive officer (a member of senior management "
                         "with reasonable knowledge of the electronic recordkeeping system)",
    "third_party": "a designated third party",
}


def _designated_statement(party: str, ref: str) -> str:
    who = DESIGNATED_PARTIES.get(party)
    if who is None:
        return ("No designated executive officer or designated third party is recorded; "
                "17a-4(f)(3)(iii) requires one, with access to and the ability to provide "
                "the records, and its undertaking filed with the designated examining "
                "authority.")
    if not ref:
        return (f"The firm names {who}, but no written undertaking filed with the "
                "designated examining authority is referenced.")
    return (f"The firm names {who}, who has access to and the ability to provide the "
            "records; its written undertaking filed with the designated examining "
            "authority is referenced here.")


def _hipaa(facts: ReportFacts, s: Mapping[str, Any], codes: Sequence[str]) -> list[dict[str, Any]]:
    acc = s["access"]
    judged, short = _judged_policies(facts)
    log_days = facts.compliance.audit_log_retention_days
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
              "The audit trail (log objects) and the hipaa policy's records are kept at "
              "least six years.",
              {"audit_log_retention_days": log_days, "policies_judged": judged,
               "policies_below_minimum": short},
              _RETENTION, codes, ok=short == 0 and log_days >= HIPAA_AUDIT_LOG_MIN_DAYS),
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
