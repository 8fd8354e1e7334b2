"""The twin is canonical and reproducible; the pages show every figure of it and name no
customer; each regulation renders."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest

from reports.compute import compute_report
from reports.facts import Regulation, ReportFacts
from reports.render import RenderError, render_html
from reports.twin import TwinError, load_twin, twin_bytes, twin_dict, twin_sha256
from tests.unit.reports import factory as F


class _Figures(HTMLParser):
    """data-k path → text of each ``<span class="fig">``, plus all visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, list[str]] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "span":
            a = dict(attrs)
            key = a.get("data-k") if a.get("class") == "fig" else None
            if key is not None:
                self.figures.setdefault(key, []).append("")
            self._open.append(key)

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for key in self._open:
            if key is not None:
                self.figures[key][-1] += data


def _leaves(node: Any, path: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_leaves(v, f"{path}/{k}" if path else k))
        return out
    if isinstance(node, list):
        out = {}
        for i, v in enumerate(node):
            out.update(_leaves(v, f"{path}/{i}"))
        return out
    return {path: node}


def _render(facts: ReportFacts) -> tuple[bytes, str]:
    report = compute_report(facts)
    data = twin_bytes(report)
    return data, render_html(report, twin_sha256(data),
                             generated_at=datetime(2026, 12, 6, 8, 0, tzinfo=UTC),
                             report_id="rep_01")


def test_twin_is_byte_identical_and_canonical() -> None:
    a = twin_bytes(compute_report(F.violating_facts()))
    b = twin_bytes(compute_report(F.violating_facts()))
    assert a == b
    # Canonical: sorted keys, no whitespace, UTF-8; no time of generation, no report id.
    parsed = json.loads(a)
    assert a == json.dumps(parsed, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False).encode()
    assert load_twin(a) == parsed
    assert parsed["schema"] == "wa-archiver.report-twin/1"
    assert parsed["checkpoint"] == {"size": 1000, "root_hash": F.ROOT, "note": F.NOTE}
    for banned in ("generated", "report_id", "created"):
        assert banned not in a.decode()
    assert twin_sha256(a) == hashlib.sha256(a).hexdigest()


def test_twin_is_independent_of_generation_time_and_report_id() -> None:
    report = compute_report(F.clean_facts())
    data = twin_bytes(report)
    h1 = render_html(report, twin_sha256(data), generated_at=datetime(2026, 1, 1, tzinfo=UTC),
                     report_id="rep_a")
    h2 = render_html(report, twin_sha256(data), generated_at=datetime(2027, 1, 1, tzinfo=UTC),
                     report_id="rep_b")
    assert h1 != h2 and "rep_a" in h1 and "rep_b" in h2
    assert twin_bytes(compute_report(F.clean_facts())) == data


def test_twin_changes_with_the_facts() -> None:
    assert twin_bytes(compute_report(F.clean_facts())) != twin_bytes(
        compute_report(F.violating_facts()))


def test_twin_facts_order_does_not_matter() -> None:
    import dataclasses
    f = F.violating_facts()
    shuffled = dataclasses.replace(f, records=tuple(reversed(f.records)),
                                   template_sends=tuple(reversed(f.template_sends)),
                                   consent_events=tuple(reversed(f.consent_events)))
    assert twin_bytes(compute_report(shuffled)) == twin_bytes(compute_report(f))


def test_load_twin_refuses_non_canonical_or_foreign_bytes() -> None:
    data = twin_bytes(compute_report(F.clean_facts()))
    with pytest.raises(TwinError, match="canonical"):
        load_twin(json.dumps(json.loads(data), indent=1).encode())
    with pytest.raises(TwinError, match="schema"):
        load_twin(b'{"schema":"x"}')
    with pytest.raises(TwinError, match="UTF-8 JSON"):
        load_twin(b"\xff")
    with pytest.raises(TwinError, match="floats"):
        load_twin(b'{"a":1.5,"schema":"wa-archiver.report-twin/1"}')


@pytest.mark.parametrize("regulation", list(Regulation))
@pytest.mark.parametrize("make", [F.clean_facts, F.violating_facts])
def test_every_twin_figure_appears_in_the_html(regulation: Regulation, make: Any) -> None:
    data, html = _render(make(regulation))
    parser = _Figures()
    parser.feed(html)
    leaves = _leaves(json.loads(data))
    assert len(leaves) > 150  # the walk really covers the twin
    missing = {p: v for p, v in leaves.items() if p not in parser.figures}
    assert missing == {}
    wrong = {p: (v, parser.figures[p]) for p, v in leaves.items()
             if any(text != str(v) for text in parser.figures[p])}
    assert wrong == {}


@pytest.mark.parametrize("regulation", list(Regulation))
def test_each_regulation_renders_its_own_section(regulation: Regulation) -> None:
    data, html = _render(F.violating_facts(regulation))
    expected = {
        Regulation.GDPR: ("GDPR audit report", "Art. 17", "Art. 30"),
        Regulation.HIPAA: ("HIPAA Security Rule audit report", "164.312(b)", "164.316(b)(2)(i)"),
        Regulation.FINRA: ("FINRA 4511 / SEC 17a-4 audit report", "SEC 17a-4(f)(2)(v)",
                           "SEC 17a-4(f)(3)(iii)"),
    }[regulation]
    for text in expected:
        assert text in html
    others = {Regulation.GDPR: "Art. 30", Regulation.HIPAA: "164.312(d)",
              Regulation.FINRA: "17a-4(f)(2)(ii)"}
    for other, marker in others.items():
        if other is not regulation:
            assert marker not in html
    # Page furniture: the twin's hash and the checkpoint feed the running header/footer.
    assert f'<div class="mono twin-sha">{twin_sha256(data)}</div>' in html
    assert 'class="cp-size"' in html and "string(twin)" in html and "string(cp-root)" in html
    assert "counter(pages)" in html and "DejaVu Sans" in html
    assert html.count("<svg") == 2


@pytest.mark.parametrize("regulation", list(Regulation))
def test_no_customer_identifier_in_html_or_twin(regulation: Regulation) -> None:
    facts = F.violating_facts(regulation)
    # Not vacuous: the identities are really in the facts the report was computed from.
    stored = json.dumps(facts.to_dict())
    for ident in (*F.CUSTOMER_PHONES, *F.CUSTOMER_NAMES):
        assert ident in stored
    data, html = _render(facts)
    texts = (data.decode(), html)
    for ident in (*F.CUSTOMER_PHONES, *F.CUSTOMER_NAMES):
        for text in texts:
            assert ident not in text
        # Nor the digits alone in another grouping.
        digits = "".join(c for c in ident if c.isdigit())
        if digits:
            assert digits not in data.decode()
            assert digits not in html
    # The pseudonyms are what the report names instead.
    assert F.CAROL in html and F.CAROL in data.decode()


def test_html_is_autoescaped() -> None:
    import dataclasses
    f = F.clean_facts()
    f = dataclasses.replace(f, scope=dataclasses.replace(
        f.scope, archive='<script>alert("x")</script> & Co'))
    _, html = _render(f)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_render_refuses_a_bad_hash_or_report_id() -> None:
    report = compute_report(F.clean_facts())
    with pytest.raises(RenderError, match="twin_sha256"):
        render_html(report, "not-a-hash")
    with pytest.raises(RenderError, match="report_id"):
        render_html(report, "0" * 64, report_id='x"; } @page { content: "')


def test_twin_dict_matches_report() -> None:
    report = compute_report(F.violating_facts())
    assert twin_dict(report)["findings"][0]["code"] == report.findings[0].code.value
