"""A bad policy file is refused with file:line and the field named (exact lines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import PolicyFileError, PolicyParamError, builtin_dir, load_policies, load_policy_file

GOOD = """\
id: mine
title: Mine
kind: obligation
citations:
  - source: Some law
    section: "1"
    summary: keep it
    url: https://example.org/law
retention:
  period: P6Y
  clock_starts: message_time
lock_mode: COMPLIANCE
disposition:
  action: review
  two_person_approval: true
erasure: refused
"""


def _load(tmp_path: Path, text: str) -> PolicyFileError:
    f = tmp_path / "mine.yaml"
    f.write_text(text)
    with pytest.raises(PolicyFileError) as info:
        load_policy_file(f)
    assert str(f) in str(info.value)
    return info.value


def test_good_file_loads(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text(GOOD)
    assert load_policy_file(f).id == "mine"


def test_unknown_field(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD.replace("  clock_starts: message_time\n",
                                       "  clock_starts: message_time\n  colour: red\n"))
    assert err.problems == ((12, "retention.colour", "Extra inputs are not permitted"),)
    want = f"{tmp_path / 'mine.yaml'}:12: retention.colour: Extra inputs are not permitted"
    assert str(err) == want


def test_wrong_type(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD.replace("two_person_approval: true", "two_person_approval: maybe"))
    ((line, field, msg),) = err.problems
    assert (line, field) == (15, "disposition.two_person_approval")
    assert "boolean" in msg


def test_bad_duration(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD.replace("period: P6Y", "period: 6 years"))
    ((line, field, msg),) = err.problems
    assert (line, field) == (10, "retention.period")
    assert "ISO 8601" in msg


def test_missing_field_points_at_parent_key(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD.replace("    url: https://example.org/law\n", "").replace(
        "    summary: keep it\n", ""))
    assert err.problems == ((5, "citations[0].summary", "Field required"),)
    err = _load(tmp_path, GOOD.replace("erasure: refused\n", ""))
    assert err.problems == ((1, "erasure", "Field required"),)


def test_bad_url_in_list_item(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD.replace("https://example.org/law", "not a url"))
    ((line, field, _),) = err.problems
    assert (line, field) == (8, "citations[0].url")


def test_bad_enum_and_several_problems_sorted(tmp_path: Path) -> None:
    text = GOOD.replace("lock_mode: COMPLIANCE", "lock_mode: STRICT").replace(
        "kind: obligation", "kind: duty")
    err = _load(tmp_path, text)
    assert [(p[0], p[1]) for p in err.problems] == [(3, "kind"), (12, "lock_mode")]


def test_yaml_syntax_error_line(tmp_path: Path) -> None:
    # PyYAML marks the problem where it gave up: end of input, after line 16
    err = _load(tmp_path, GOOD.replace("erasure: refused", "erasure: [refused"))
    assert err.problems[0][0] == 17 and "YAML syntax" in err.problems[0][2]


def test_duplicate_key(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD + "lock_mode: GOVERNANCE\n")
    assert err.problems == ((17, "lock_mode", "duplicate key"),)


def test_undeclared_parameter(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD.replace("period: P6Y", "period: ${years}"))
    assert err.problems == ((10, "${years}", "parameter is not declared under 'parameters'"),)


def test_parameter_value_is_validated_at_its_use(tmp_path: Path) -> None:
    text = GOOD.replace("period: P6Y", "period: ${p}") + (
        "parameters:\n  p:\n    default: P6Y\n    description: the period\n")
    f = tmp_path / "mine.yaml"
    f.write_text(text)
    with pytest.raises(PolicyFileError) as info:
        load_policy_file(f, {"mine.p": "forever"})
    assert info.value.problems[0][:2] == (10, "retention.period")


def test_bad_parameter_spec(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD + "parameters:\n  p:\n    default: P6Y\n")
    assert err.problems == ((18, "parameters.p.description", "Field required"),)


def test_unknown_operator_params() -> None:
    with pytest.raises(PolicyParamError, match="declares no 'perod'"):
        load_policies([builtin_dir()], {"gdpr.perod": "P1Y"})
    with pytest.raises(PolicyParamError, match="names no loaded policy"):
        load_policies([builtin_dir()], {"gpdr.enabled": "true"})


def test_exactly_one_default(tmp_path: Path) -> None:
    (tmp_path / "d2.yaml").write_text(
        (builtin_dir() / "default.yaml").read_text().replace("id: default", "id: default2"))
    with pytest.raises(PolicyParamError, match="exactly one enabled policy of kind 'default'"):
        load_policies([builtin_dir(), tmp_path])
