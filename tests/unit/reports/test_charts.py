"""Inline SVG charts: well-formed, bars proportional to the counts, labels escaped."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from datetime import timedelta

from reports import charts
from reports.compute import compute_report
from reports.facts import LockCheck, LockCheckMode, Period
from reports.render import render_html
from reports.twin import twin_bytes, twin_sha256
from tests.unit.reports import factory as F

SVG = "{http://www.w3.org/2000/svg}"


def test_stacked_bars_are_proportional_and_well_formed() -> None:
    svg = charts.stacked_bars("Volume", ["2026-11-01", "2026-11-02"],
                              {"a": [2, 8], "b": [0, 2]}, {"a": "<A&>"})
    root = ET.fromstring(svg)  # noqa: S314 - our own output: checks it is well-formed XML
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("width") != "9"]  # not legend keys
    heights = sorted(float(r.get("height", "0")) for r in bars)
    # top of the axis is 10: heights 2, 2 and 8 tenths of the plot (b's 0 draws nothing).
    plot = charts.HEIGHT - 10 - 46
    assert heights == [round(plot * 0.2, 1), round(plot * 0.2, 1), round(plot * 0.8, 1)]
    assert "&lt;A&amp;&gt;" in svg and "<A&>" not in svg


def test_lines_handle_all_zero_series() -> None:
    svg = charts.lines("Consent", ["2026-11-01"], {"opt_in": [0], "opt_out": [0]})
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    assert len(list(root.iter(f"{SVG}polyline"))) == 2
    assert not re.search(r"nan|inf", svg)


def test_an_empty_period_renders() -> None:
    f = F.clean_facts()
    empty = dataclasses.replace(
        f, records=(), media=(), template_sends=(), consent_events=(), holds=(), disposals=(),
        erasures=(), lock_check=LockCheck(LockCheckMode.FULL, 0, 0, None, ()),
        completeness=dataclasses.replace(f.completeness, watches=()),
    )
    report = compute_report(empty)
    assert report.findings == ()
    assert report.sections["inventory"]["records"] == 0
    html = render_html(report, twin_sha256(twin_bytes(report)))
    assert html.count("<svg") == 2


def test_a_silent_watched_number_with_no_record_is_flagged() -> None:
    f = F.clean_facts()
    f = dataclasses.replace(f, scope=dataclasses.replace(
        f.scope, period=Period(F.START, F.START + timedelta(days=365))))
    report = compute_report(f)  # the clean week's records, then eleven months of silence
    codes = [x.code.value for x in report.findings]
    assert codes == ["completeness.silent_number"]
    assert report.findings[0].refs == (F.NUMBER_A, F.NUMBER_B)
    assert len(report.sections["daily"]["days"]) == 365
    render_html(report, twin_sha256(twin_bytes(report)))
