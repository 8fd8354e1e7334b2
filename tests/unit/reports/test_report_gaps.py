"""Issue 12's content gaps in the pure core: locks of every kind of object, verify findings
per object, sign-in failures by reason, history phases, and the SEC 17a-4 wording."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from reports.compute import VERIFY_LISTED, compute_report
from reports.errors import FactsError
from reports.facts import (
    AccessFacts,
    HistoryPhase,
    LockCheck,
    LockCheckMode,
    LockMode,
    LockObservation,
    RefusedRequest,
    Regulation,
    ReportFacts,
    VerifyFinding,
    VerifySweep,
)
from tests.unit.reports import factory as F


def _obs(kind: str, key: str, short: bool = False) -> LockObservation:
    until = F.RETAIN - timedelta(days=3) if short else F.RETAIN
    return LockObservation(key, "v1", None, LockMode.COMPLIANCE, until, LockMode.COMPLIANCE,
                           F.RETAIN, kind=kind)


def _with_object_locks(f: ReportFacts) -> ReportFacts:
    raw = LockCheck(LockCheckMode.FULL, 2, 2, None, (
        _obs("raw", "raw/2026/11/02/batch-a"), _obs("raw", "raw/2026/11/02/batch-b", True)),
        kind="raw")
    media = LockCheck(LockCheckMode.SAMPLE, 5, 1, "seed", (_obs("media", "media/o/abc"),),
                      kind="media")
    audit = LockCheck(LockCheckMode.FULL, 0, 0, None, (), kind="audit")
    return dataclasses.replace(f, object_lock_checks=(audit, media, raw))


def test_lock_check_covers_every_kind_of_object() -> None:
    f = _with_object_locks(F.clean_facts())
    report = compute_report(f)
    rows = report.sections["retention"]["by_kind"]
    assert [r["kind"] for r in rows] == ["record", "raw", "media", "audit"]
    raw, media = rows[1], rows[2]
    assert raw == {"kind": "raw", "check_mode": "full", "population": 2, "read": 2,
                   "compliant": 1, "exceptions": 1, "coverage": "scope"}
    assert media["check_mode"] == "sample" and media["read"] == 1 and media["population"] == 5
    short = {x.code.value: x for x in report.findings}["retention.lock_shorter_than_policy"]
    assert short.refs == ("raw/2026/11/02/batch-b",) and short.count == 1
    # The records' own figures stay the records'.
    assert report.sections["retention"]["population"] == f.lock_check.population
    assert ReportFacts.from_dict(f.to_dict()) == f


def test_lock_checks_are_one_per_kind_and_hold_only_their_kind() -> None:
    with pytest.raises(FactsError):
        LockCheck(LockCheckMode.FULL, 1, 1, None, (_obs("raw", "raw/x"),), kind="media")
    f = F.clean_facts()
    twice = LockCheck(LockCheckMode.FULL, 0, 0, None, (), kind="raw")
    with pytest.raises(FactsError):
        dataclasses.replace(f, object_lock_checks=(twice, twice))
    with pytest.raises(FactsError):
        dataclasses.replace(f, object_lock_checks=(dataclasses.replace(f.lock_check),))


def test_verify_findings_are_listed_per_object_bounded() -> None:
    f = F.clean_facts()
    listed = tuple(VerifyFinding("object:hash_mismatch", f"records/aa/r_{i:04d}", f"v{i}")
                   for i in range(VERIFY_LISTED + 20))
    sweep = VerifySweep(f.integrity.verify.finished_at if f.integrity.verify else F.END,
                        1000, listed, total_findings=500,
                        by_kind=(RefusedRequest("verify", "object:hash_mismatch", 480),
                                 RefusedRequest("verify", "object:missing", 20)))
    g = dataclasses.replace(f, integrity=dataclasses.replace(f.integrity, verify=sweep))
    report = compute_report(g)
    integrity = report.sections["integrity"]
    assert integrity["verify_findings"] == 500
    assert integrity["verify_findings_by_kind"] == {"object:hash_mismatch": 480,
                                                    "object:missing": 20}
    rows = integrity["verify_findings_listed"]
    assert len(rows) == VERIFY_LISTED
    assert rows[0] == {"code": "object:hash_mismatch", "object": "records/aa/r_0000",
                       "version_id": "v0"}
    found = {x.code.value: x for x in report.findings}["integrity.verify_findings"]
    assert found.count == 500 and "records/aa/r_0000" in found.refs
    assert dict(found.detail) == {"code:object:hash_mismatch": "480",
                                  "code:object:missing": "20"}
    with pytest.raises(FactsError):
        VerifySweep(F.END, 1, listed, total_findings=3)


def test_sign_in_failures_by_reason() -> None:
    f = F.clean_facts()
    access = AccessFacts(f.access.events, 7, f.access.refused, (
        RefusedRequest("anonymous", "token_invalid", 5),
        RefusedRequest("anonymous", "token_expired", 2)))
    section = compute_report(dataclasses.replace(f, access=access)).sections["access"]
    assert section["sign_in_failures"] == 7
    assert section["sign_in_failures_by_reason"] == {"token_expired": 2, "token_invalid": 5}


def test_history_phases_per_number() -> None:
    f = F.clean_facts()
    history = (HistoryPhase(F.NUMBER_A, 0, True, 40, 3, "in_progress"),
               HistoryPhase(F.NUMBER_A, 1, False, 60, 1, "in_progress"))
    g = dataclasses.replace(f, completeness=dataclasses.replace(f.completeness,
                                                                history=history))
    report = compute_report(g)
    rows = report.sections["completeness"]["history"]
    assert rows[1] == {"number": F.NUMBER_A, "phase": 1, "chunks": 1, "progress": 60,
                       "completed": "no", "state": "in_progress"}
    found = {x.code.value: x for x in report.findings}["completeness.history_sync_incomplete"]
    assert found.refs == (f"{F.NUMBER_A}:phase1",)


def _finra_item(f: ReportFacts, ref: str) -> dict[str, object]:
    items = compute_report(f).sections["regulation_items"]
    return next(i for i in items if i["ref"] == ref)


def test_designated_party_needs_a_known_kind_and_an_undertaking() -> None:
    f = F.clean_facts(Regulation.FINRA)

    def with_party(party: str, ref: str) -> dict[str, object]:
        return _finra_item(dataclasses.replace(f, compliance=dataclasses.replace(
            f.compliance, designated_party=party, designated_party_ref=ref)),
            "SEC 17a-4(f)(3)(iii)")

    officer = with_party("executive_officer", "deo-undertaking-2026")
    assert officer["status"] == "met"
    assert "senior management" in str(officer["statement"])
    assert "designated examining authority" in str(officer["statement"])
    assert with_party("third_party", "dtp-2026")["status"] == "met"
    assert with_party("third_party", "")["status"] == "exception"  # no undertaking on file
    assert with_party("someone", "x")["status"] == "exception"  # not a kind the rule knows
    assert with_party("", "")["status"] == "exception"


def test_sec_17a4_wording_follows_the_2022_rule() -> None:
    f = F.clean_facts(Regulation.FINRA)
    verify = _finra_item(f, "SEC 17a-4(f)(2)(ii)")
    assert "completeness and accuracy" in str(verify["title"])
    worm = _finra_item(f, "SEC 17a-4(f)(2)(i)(B)")
    assert "(f)(2)(i)(A)" in str(worm["statement"]) and worm["status"] == "met"
    governance = dataclasses.replace(f, policies=tuple(
        dataclasses.replace(p, lock_mode=LockMode.GOVERNANCE) for p in f.policies))
    weak = _finra_item(governance, "SEC 17a-4(f)(2)(i)(B)")
    assert weak["status"] == "exception"
    assert "COMPLIANCE mode (the" not in str(weak["statement"])  # no false claim
