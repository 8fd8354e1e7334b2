"""Numbers and findings from seeded facts: exactly the planted violations, nothing else."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from reports.compute import compute_report
from reports.facts import (
    ConsentEvent,
    ConsentKind,
    Consistency,
    DisposalFact,
    LockMode,
    Regulation,
    TemplateSend,
    VerifyFinding,
    VerifySweep,
)
from reports.findings import Code, Severity
from tests.unit.reports import factory as F


def _codes(facts: object) -> dict[str, int]:
    report = compute_report(facts)  # type: ignore[arg-type]
    return {f.code.value: f.count for f in report.findings}


@pytest.mark.parametrize("regulation", list(Regulation))
def test_clean_facts_yield_no_findings(regulation: Regulation) -> None:
    report = compute_report(F.clean_facts(regulation))
    assert report.findings == ()
    assert report.sections["finding_counts"] == {"critical": 0, "high": 0, "medium": 0}
    # Not vacuous: the clean week has content.
    assert report.sections["inventory"]["records"] == 56
    assert report.sections["consent"]["marketing_sends"] == 2


@pytest.mark.parametrize("regulation", list(Regulation))
def test_seeded_violations_yield_exactly_those_findings(regulation: Regulation) -> None:
    report = compute_report(F.violating_facts(regulation))
    by_code = {f.code: f for f in report.findings}
    assert set(by_code) == {
        Code.MARKETING_AFTER_OPT_OUT,
        Code.LOCK_SHORTER,
        Code.MEDIA_NOT_FETCHED,
        Code.SILENT_NUMBER,
        Code.ERASURE_REFUSED,
    }
    assert len(report.findings) == 5
    assert all(f.count == 1 for f in report.findings)

    m = by_code[Code.MARKETING_AFTER_OPT_OUT]
    assert m.record_ids == (F.MARKETING_AFTER_OPT_OUT,) and m.subjects == (F.CAROL,)
    assert m.severity is Severity.HIGH
    lock = by_code[Code.LOCK_SHORTER]
    assert lock.record_ids == (F.SHORT_LOCK_RECORD,)
    assert lock.refs == (f"records/{F.SHORT_LOCK_RECORD[2:4]}/{F.SHORT_LOCK_RECORD}",)
    assert dict(lock.detail) == {"max_shortfall_days": "30"}
    assert lock.severity is Severity.CRITICAL
    assert by_code[Code.MEDIA_NOT_FETCHED].record_ids == (F.MISSING_MEDIA_RECORD,)
    assert by_code[Code.SILENT_NUMBER].refs == (F.NUMBER_SILENT,)
    refused = by_code[Code.ERASURE_REFUSED]
    assert refused.subjects == (F.CAROL,) and dict(refused.detail) == {"reason:legal_hold": "1"}
    # Sorted by severity first.
    assert report.findings[0].severity is Severity.CRITICAL
    assert report.sections["finding_counts"] == {"critical": 1, "high": 1, "medium": 3}


def test_consent_is_judged_at_send_time() -> None:
    f = F.clean_facts()
    t0 = F.START + timedelta(days=5)
    sends = (
        TemplateSend(F.record(500), F.BOB, F.NUMBER_A, t0, "marketing"),  # never opted in
        TemplateSend(F.record(501), F.ALICE, F.NUMBER_A, t0, "marketing"),  # opt-out same instant
        TemplateSend(F.record(502), F.CAROL, F.NUMBER_A, t0, "utility"),  # not marketing
        # Opted in again after an opt-out: valid.
        TemplateSend(F.record(503), F.subject("dave"), F.NUMBER_A, t0, "marketing"),
        # Outside the period: not judged here.
        TemplateSend(F.record(504), F.BOB, F.NUMBER_A, F.END, "marketing"),
    )
    dave = F.subject("dave")
    events = (
        ConsentEvent(F.ALICE, ConsentKind.OPT_OUT, t0),
        ConsentEvent(dave, ConsentKind.OPT_IN, F.START),
        ConsentEvent(dave, ConsentKind.OPT_OUT, F.START + timedelta(days=1)),
        ConsentEvent(dave, ConsentKind.OPT_IN, F.START + timedelta(days=2)),
    )
    f = dataclasses.replace(f, template_sends=(*f.template_sends, *sends),
                            consent_events=(*f.consent_events, *events))
    report = compute_report(f)
    by_code = {x.code: x for x in report.findings}
    assert set(by_code) == {Code.MARKETING_WITHOUT_OPT_IN, Code.MARKETING_AFTER_OPT_OUT}
    assert by_code[Code.MARKETING_WITHOUT_OPT_IN].record_ids == (F.record(500),)
    assert by_code[Code.MARKETING_AFTER_OPT_OUT].record_ids == (F.record(501),)
    assert report.sections["consent"]["marketing_without_consent"] == 2


def test_lock_missing_and_weaker_mode() -> None:
    f = F.clean_facts()
    obs = list(f.lock_check.observations)
    obs[0] = dataclasses.replace(obs[0], observed_mode=None, observed_retain_until=None)
    obs[1] = dataclasses.replace(obs[1], observed_mode=LockMode.GOVERNANCE)
    f = dataclasses.replace(f, lock_check=dataclasses.replace(f.lock_check,
                                                              observations=tuple(obs)))
    report = compute_report(f)
    assert {x.code for x in report.findings} == {Code.LOCK_MISSING, Code.LOCK_MODE_WEAKER}
    assert report.sections["retention"]["exceptions"] == 2
    assert report.sections["retention"]["compliant"] == 18


def test_integrity_findings() -> None:
    f = F.clean_facts()
    bad = dataclasses.replace(f.integrity, consistency=Consistency.FAILED, verify=VerifySweep(
        F.END, 10, (VerifyFinding("hash_mismatch", "records/ab/r_x"),)))
    assert _codes(dataclasses.replace(f, integrity=bad)) == {
        Code.CONSISTENCY_FAILED.value: 1, Code.VERIFY_FINDINGS.value: 1}
    unchecked = dataclasses.replace(f.integrity, consistency=Consistency.NOT_CHECKED,
                                    verify=None)
    assert _codes(dataclasses.replace(f, integrity=unchecked)) == {
        Code.CONSISTENCY_MISSING.value: 1, Code.VERIFY_NEVER_RAN.value: 1}
    # A "first report" that does name a previous checkpoint was not checked either.
    first = dataclasses.replace(f.integrity, consistency=Consistency.FIRST_REPORT)
    assert _codes(dataclasses.replace(f, integrity=first)) == {Code.CONSISTENCY_MISSING.value: 1}
    first_real = dataclasses.replace(first, previous=None)
    assert _codes(dataclasses.replace(f, integrity=first_real)) == {}


def test_disposal_without_tombstone_and_overdue() -> None:
    f = F.clean_facts()
    f = dataclasses.replace(
        f,
        disposals=(*f.disposals, DisposalFact(F.record(8002), F.START, "default", None)),
        completeness=dataclasses.replace(f.completeness, overdue_disposals=(F.record(8003),)),
    )
    report = compute_report(f)
    assert {x.code for x in report.findings} == {Code.DISPOSAL_NO_TOMBSTONE,
                                                 Code.DISPOSAL_OVERDUE}
    assert report.sections["disposals"] == {"disposed": 2, "with_tombstone": 1,
                                            "by_policy": {"default": 2}, "overdue": 1,
                                            "number_unknown": 0}


def test_inventory_and_daily_figures() -> None:
    s = compute_report(F.clean_facts()).sections
    inv = s["inventory"]
    assert inv["by_number"] == {F.NUMBER_A: 28, F.NUMBER_B: 28}
    assert sum(inv["by_origin"].values()) == 56
    assert inv["by_kind"] == {"message": 42, "status": 14}
    assert s["daily"]["days"][0] == "2026-11-01" and len(s["daily"]["days"]) == 7
    assert sum(sum(v) for v in s["daily"]["records_by_origin"].values()) == 56
    assert s["daily"]["consent"]["opt_in"] == [0, 1, 0, 0, 0, 0, 0]  # ALICE's is before
    assert s["holds"] == {"placed": 1, "released": 1, "active_at_end": 1,
                          "records_held_at_end": 12}
    assert s["access"]["totals"] == {"search": 1, "view": 1, "export": 1}
    assert s["access"]["refused_by_code"] == {"scope_denied": 2}


def test_regulation_items_cite_and_judge() -> None:
    clean = compute_report(F.clean_facts(Regulation.FINRA)).sections["regulation_items"]
    assert [i["ref"] for i in clean] == [
        "SEC 17a-4(f)(2)(i)(B)", "SEC 17a-4(f)(2)(ii)", "SEC 17a-4(f)(2)(v)",
        "FINRA 4511(b), SEC 17a-4(b)(4)", "SEC 17a-4(f)(3)(iii)"]
    assert {i["status"] for i in clean} == {"met"}
    assert clean[3]["figures"] == {"policies_judged": 2, "policies_below_minimum": 0}
    bad = compute_report(F.violating_facts(Regulation.FINRA)).sections["regulation_items"]
    assert bad[0]["status"] == "exception"
    assert bad[0]["findings"] == ["retention.lock_shorter_than_policy"]
    gdpr = compute_report(F.violating_facts(Regulation.GDPR)).sections["regulation_items"]
    assert [i["ref"] for i in gdpr] == ["Art. 5(1)(e)", "Art. 17", "Art. 30"]
    assert gdpr[1]["status"] == "exception" and gdpr[1]["figures"]["refused"] == 1
    hipaa = compute_report(F.clean_facts(Regulation.HIPAA)).sections["regulation_items"]
    assert [i["ref"] for i in hipaa] == ["164.312(b)", "164.312(c)(1)", "164.312(d)",
                                        "164.316(b)(2)(i)"]
    assert hipaa[2]["figures"] == {"refused_requests": 2, "sign_in_failures": 3}
    assert hipaa[3]["status"] == "met"


def test_retention_minimums_per_policy() -> None:
    f = F.clean_facts(Regulation.FINRA)
    policies = {p.policy_id: p for p in f.policies}
    # sec_17a4 at three years is fine under FINRA; finra_4511 at three years is not.
    short = dataclasses.replace(f, policies=(
        dataclasses.replace(policies["finra_4511"], retain_days=3 * 365),
        policies["sec_17a4"], policies["default"]))
    items = compute_report(short).sections["regulation_items"]
    assert items[3]["status"] == "exception"
    assert items[3]["figures"] == {"policies_judged": 2, "policies_below_minimum": 1}
    # A short policy the rule does not govern (GDPR caps retention) is not judged.
    gdpr_like = dataclasses.replace(f, policies=(
        *f.policies, dataclasses.replace(policies["default"], policy_id="gdpr",
                                         retain_days=365)))
    assert compute_report(gdpr_like).sections["regulation_items"][3]["status"] == "met"
    # HIPAA: the audit trail must be kept six years too.
    h = F.clean_facts(Regulation.HIPAA)
    h = dataclasses.replace(h, compliance=dataclasses.replace(h.compliance,
                                                              audit_log_retention_days=2000))
    item = compute_report(h).sections["regulation_items"][3]
    assert item["status"] == "exception" and item["figures"]["audit_log_retention_days"] == 2000
    # FINRA without a second copy or designated party: those items are exceptions.
    bare = dataclasses.replace(f, compliance=dataclasses.replace(
        f.compliance, second_copy=False, designated_party=""))
    statuses = [i["status"] for i in compute_report(bare).sections["regulation_items"]]
    assert statuses == ["met", "met", "exception", "met", "exception"]
