"""The aggregation-shaped input (``RecordSummary``) gives the very report the per-record
facts give, so large archives can pass counts instead of a million ``RecordFact``s."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from reports.compute import compute_report
from reports.errors import FactsError
from reports.facts import NumberActivity, NumberWatch, RecordSummary, ReportFacts
from reports.findings import silent_numbers, summarise
from reports.twin import twin_bytes
from tests.unit.reports import factory as F


def _as_summary(f: ReportFacts) -> ReportFacts:
    return dataclasses.replace(f, records=(), summary=summarise(f.records, f.scope.period))


@pytest.mark.parametrize("make", [F.clean_facts, F.violating_facts])
def test_a_summary_gives_the_same_twin_as_the_records(make: object) -> None:
    f = make()  # type: ignore[operator]
    per_record = compute_report(f)
    aggregated = compute_report(_as_summary(f))
    assert per_record.sections["inventory"]["records"] > 0
    assert twin_bytes(aggregated) == twin_bytes(per_record)


def test_a_summary_round_trips_through_json() -> None:
    f = _as_summary(F.violating_facts())
    assert f.summary is not None and f.summary.counts and f.summary.activity
    back = ReportFacts.from_dict(json.loads(json.dumps(f.to_dict())))
    assert back == f


def test_records_and_a_summary_together_are_refused() -> None:
    f = F.clean_facts()
    with pytest.raises(FactsError, match="records and summary"):
        dataclasses.replace(f, summary=summarise(f.records, f.scope.period))


def _activity_facts(activity: NumberActivity, threshold: int) -> ReportFacts:
    f = F.clean_facts()
    return dataclasses.replace(
        f, records=(), summary=RecordSummary(counts=(), activity=(activity,)),
        completeness=dataclasses.replace(
            f.completeness, watches=(NumberWatch(activity.number, threshold),)))


def test_a_coarse_activity_still_gives_the_exact_longest_silence() -> None:
    # Buckets of an hour; the stretch between the two records is 30 hours and is known
    # exactly, so the finding says exactly how long and from when.
    first = F.START + timedelta(hours=1)
    gap_start, gap_end = F.START + timedelta(days=2), F.START + timedelta(days=3, hours=6)
    act = NumberActivity(F.NUMBER_A, first, F.END - timedelta(hours=2), gap_start, gap_end,
                         3600)
    assert silent_numbers(_activity_facts(act, 86_400)) == [
        (F.NUMBER_A, 30 * 3600, gap_start)]
    # Without an inner stretch longer than the resolution, the edges decide: not silent.
    quiet = dataclasses.replace(act, gap_start=None, gap_end=None)
    assert silent_numbers(_activity_facts(quiet, 86_400)) == []


def test_an_activity_coarser_than_the_threshold_is_refused() -> None:
    act = NumberActivity(F.NUMBER_A, F.START, F.END - timedelta(seconds=1), None, None,
                         7200)
    with pytest.raises(FactsError, match="resolution above the threshold"):
        silent_numbers(_activity_facts(act, 3600))


def test_a_count_day_must_be_midnight_utc() -> None:
    f = _as_summary(F.clean_facts())
    assert f.summary is not None
    cell = f.summary.counts[0]
    with pytest.raises(FactsError, match="midnight"):
        dataclasses.replace(cell, day=datetime(2026, 11, 2, 5, tzinfo=UTC))
