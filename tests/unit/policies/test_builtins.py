"""Every shipped policy loads, cites its source, and says what the issue asked."""

from __future__ import annotations

import pytest

from policies import Erasure, Kind, LockMode, builtin_dir, load_policies, load_policy_file

BUILTINS = sorted(p.stem for p in builtin_dir().glob("*.yaml"))


def test_the_expected_files_ship() -> None:
    assert BUILTINS == [
        "default", "finra_4511", "gdpr", "hipaa", "hipaa_phi_messages", "mifid2", "sec_17a4",
    ]


@pytest.mark.parametrize("stem", BUILTINS)
def test_each_builtin_loads(stem: str) -> None:
    p = load_policy_file(builtin_dir() / f"{stem}.yaml")
    assert p.id == stem
    assert p.citations and all(c.summary for c in p.citations)
    assert p.source_file.endswith(f"{stem}.yaml")


def test_builtins_are_off_by_default_except_default() -> None:
    ps = load_policies([builtin_dir()])
    assert [p.id for p in ps.enabled] == ["default"]


def test_citations_and_periods() -> None:
    ps = load_policies([builtin_dir()])
    pol = ps.policies
    sec = pol["sec_17a4"]
    assert (sec.retention.period, sec.retention.accessible_period) == ("P3Y", "P2Y")
    assert {c.section for c in sec.citations} == {"(b)(4)", "(f)"}
    assert sec.lock_mode is LockMode.COMPLIANCE and sec.kind is Kind.OBLIGATION
    assert pol["finra_4511"].retention.period == "P6Y"
    assert pol["finra_4511"].citations[0].section == "(b)"
    assert pol["hipaa"].retention.period == "P6Y"
    assert pol["hipaa"].citations[0].section == "(b)(2)(i)"
    assert pol["hipaa_phi_messages"].retention.period == "P6Y"  # parameter default
    assert pol["mifid2"].retention.period == "P5Y"
    assert pol["mifid2"].citations[0].section == "Art. 16(7)"
    gdpr = pol["gdpr"]
    assert gdpr.kind is Kind.LIMITATION
    assert gdpr.erasure is Erasure.ALLOWED_UNLESS_OBLIGATION
    assert {c.section for c in gdpr.citations} == {
        "Art. 5(1)(e)", "Art. 17", "Art. 17(3)(b)", "Art. 17(3)(e)", "Art. 7(1)",
    }
    assert gdpr.consent.require_opt_in_for_template_categories == ("MARKETING",)
