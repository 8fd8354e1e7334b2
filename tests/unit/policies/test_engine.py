"""The conflict rule, assignment rules, erasure and explain."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from policies import (
    Erasure,
    LockMode,
    PolicySet,
    RecordFacts,
    builtin_dir,
    decide,
    erasure_check,
    explain,
    load_policies,
)
from policies.engine import RULE_DEFAULT, RULE_LIMITATION, RULE_OBLIGATION

Make = Callable[..., PolicySet]
Facts = Callable[..., RecordFacts]
NOW = datetime(2025, 1, 1, tzinfo=UTC)
T0 = datetime(2024, 2, 29, 12, 0, tzinfo=UTC)


def test_finra_and_gdpr_keep_six_years(builtins: Make, facts: Facts) -> None:
    d = decide(builtins("finra_4511", "gdpr"), facts(), NOW)
    assert d.matched == ("finra_4511", "gdpr")
    assert d.governing == "finra_4511"
    assert d.conflict_rule == RULE_OBLIGATION
    assert d.retain_until == datetime(2030, 2, 28, 12, 0, tzinfo=UTC)  # 29 Feb clamps
    assert d.lock_mode is LockMode.COMPLIANCE
    assert d.erasure is Erasure.REFUSED and d.erasure_blocked_by == ("finra_4511",)


def test_sec_and_finra_longest_obligation_wins(builtins: Make, facts: Facts) -> None:
    d = decide(builtins("sec_17a4", "finra_4511"), facts(), NOW)
    assert d.governing == "finra_4511"
    assert d.retain_until.year == 2030
    assert d.accessible_until == datetime(2026, 2, 28, 12, 0, tzinfo=UTC)  # sec's P2Y
    assert d.disposition.action == "review" and d.disposition.two_person_approval


def test_gdpr_only_caps_the_default(builtins: Make, facts: Facts) -> None:
    # default P1Y is shorter than gdpr's P2Y cap: the default wins the minimum
    d = decide(builtins("gdpr"), facts(), NOW)
    assert d.conflict_rule == RULE_LIMITATION
    assert d.governing == "default"
    assert d.retain_until == datetime(2025, 2, 28, 12, 0, tzinfo=UTC)
    # a longer house period is capped by gdpr
    d = decide(builtins("gdpr", default__period="P10Y"), facts(), NOW)
    assert d.governing == "gdpr"
    assert d.retain_until == datetime(2026, 2, 28, 12, 0, tzinfo=UTC)
    assert d.lock_mode is LockMode.GOVERNANCE
    assert d.disposition.action == "delete"
    assert d.erasure is Erasure.ALLOWED


def test_obligation_is_never_shortened_by_a_limitation(builtins: Make, facts: Facts) -> None:
    d = decide(builtins("mifid2", "gdpr", gdpr__max_period="P1M"), facts(), NOW)
    assert d.governing == "mifid2"
    assert d.retain_until == datetime(2029, 2, 28, 12, 0, tzinfo=UTC)
    assert any("does not shorten" in r for r in d.reasons)


def test_nothing_enabled_uses_default(builtins: Make, facts: Facts) -> None:
    d = decide(builtins(), facts(), NOW)
    assert (d.governing, d.conflict_rule, d.matched) == ("default", RULE_DEFAULT, ("default",))
    assert d.retain_until == datetime(2025, 2, 28, 12, 0, tzinfo=UTC)


def test_hipaa_state_law_parameter(builtins: Make, facts: Facts) -> None:
    d = decide(builtins("hipaa", "hipaa_phi_messages"), facts(), NOW)
    assert d.governing == "hipaa_phi_messages" and d.retain_until.year == 2030
    d = decide(builtins("hipaa", "hipaa_phi_messages",
                        hipaa_phi_messages__state_law_period="P10Y"), facts(), NOW)
    assert d.retain_until == datetime(2034, 2, 28, 12, 0, tzinfo=UTC)
    # consent records (the documentation the engine sees; audit events are log objects
    # kept by the log's own retention) fall under 164.316(b)(2)(i), from capture time
    later = datetime(2024, 3, 1, tzinfo=UTC)
    d = decide(builtins("hipaa"), facts(record_kind="consent", capture_time=later), NOW)
    assert d.governing == "hipaa" and d.retain_until == datetime(2030, 3, 1, tzinfo=UTC)


def test_mifid_period_up_to_seven_years(builtins: Make, facts: Facts) -> None:
    d = decide(builtins("mifid2", mifid2__period="P7Y"), facts(), NOW)
    assert d.retain_until.year == 2031


def test_consent_records_are_kept_as_proof(builtins: Make, facts: Facts) -> None:
    d = decide(builtins("gdpr"), facts(record_kind="consent"), NOW)
    assert d.conflict_rule == RULE_OBLIGATION and d.governing == "gdpr"
    assert d.retain_until == datetime(2027, 2, 28, 12, 0, tzinfo=UTC)  # P3Y default
    assert d.erasure is Erasure.REFUSED


def test_marketing_template_needs_opt_in(builtins: Make, facts: Facts) -> None:
    f = facts(direction="outbound", origin="api", message_type="template",
              template_category="marketing")
    assert decide(builtins("gdpr"), f, NOW).opt_in_required_by == ("gdpr",)
    f2 = facts(direction="outbound", message_type="template", template_category="UTILITY")
    assert decide(builtins("gdpr"), f2, NOW).opt_in_required_by == ()


def test_erasure_after_obligation_expired(builtins: Make, facts: Facts) -> None:
    d = decide(builtins("finra_4511", "gdpr"), facts(), datetime(2031, 1, 1, tzinfo=UTC))
    assert d.erasure is Erasure.ALLOWED


def test_erasure_check_names_policy_or_hold(builtins: Make, facts: Facts) -> None:
    ps = builtins("finra_4511", "gdpr")
    d_kept = decide(ps, facts(), NOW)
    d_free = decide(builtins("gdpr"), facts(), NOW)
    ok, why = erasure_check([d_free, d_kept], holds=[])
    assert not ok and "finra_4511" in why and "2030-02-28" in why
    ok, why = erasure_check([d_free], holds=["case-7"])
    assert not ok and "case-7" in why and "17(3)(e)" in why
    ok, _ = erasure_check([d_free], holds=[])
    assert ok


OPERATOR = """\
id: desk_policy
title: Trading desk numbers only
kind: obligation
citations:
  - {source: internal, section: "1", summary: desk records}
retention: {period: P8Y}
lock_mode: COMPLIANCE
disposition: {action: review}
erasure: refused
applies_to:
  - business_numbers: ["1099"]
    direction: [outbound]
  - tags: [trade]
"""


def test_assignment_rules(tmp_path: Path, facts: Facts) -> None:
    (tmp_path / "desk.yaml").write_text(OPERATOR)
    ps = load_policies([builtin_dir(), tmp_path])
    d = decide(ps, facts(direction="outbound"), NOW)
    assert d.matched == ("desk_policy",)
    assert "applies_to[0] matched (business number 1099, direction=outbound)" in d.reasons[0]
    assert decide(ps, facts(direction="inbound"), NOW).matched == ("default",)
    d = decide(ps, facts(phone_number_id="other", tags=frozenset({"trade", "x"})), NOW)
    assert d.matched == ("desk_policy",) and "applies_to[1] matched (tag trade)" in d.reasons[0]
    # display number matches too
    d = decide(ps, facts(phone_number_id=None, business_number="1099", direction="outbound"), NOW)
    assert d.governing == "desk_policy"


def test_operator_file_replaces_builtin_by_id(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(
        (builtin_dir() / "default.yaml").read_text().replace("${period}", "P3Y")
    )
    ps = load_policies([builtin_dir(), tmp_path])
    assert ps.policies["default"].retention.period == "P3Y"
    assert ps.policies["default"].source_file.endswith("mine.yaml")


def test_clock_falls_back_when_message_time_unknown(builtins: Make, facts: Facts) -> None:
    d = decide(builtins("mifid2"), facts(message_time=None), NOW)
    assert d.clock_start == T0
    assert any("message_time unknown" in r for r in d.reasons)


def test_explain_output(builtins: Make, facts: Facts) -> None:
    d = decide(builtins("finra_4511", "gdpr"), facts(), NOW)
    assert explain(d) == """\
record kind:     message
matched:         finra_4511, gdpr
governing:       finra_4511
conflict rule:   longest obligation wins
clock starts:    2024-02-29T12:00:00+00:00
retain until:    2030-02-28T12:00:00+00:00
lock mode:       COMPLIANCE
disposition:     review (two-person approval)
erasure:         refused (blocked by finra_4511)
why:
  - finra_4511: applies_to[0] matched (record_kind=message)
  - gdpr: no assignment rules, applies to every record
  - conflict rule: longest obligation wins: finra_4511 keeps P6Y until 2030-02-28
  - gdpr: its cap (P2Y) does not shorten an obligation
  - erasure refused now: finra_4511"""
