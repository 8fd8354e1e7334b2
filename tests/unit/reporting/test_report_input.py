"""Bad report periods and parameters are refused up front (400/422), never queued: a
period of decades would fill the worker's memory with one row per day, a year the index
cannot search fails the job as an internal error, and a JSON number or ``true`` is not a
date or a sample size."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from archiver.api.routes.reports import ReportBody
from archiver.reporting.gather import MAX_PERIOD_DAYS, GatherError, ReportRequest


def _parse(body: dict[str, Any]) -> ReportBody:
    # As FastAPI does: the JSON body decoded, then validated in Python mode.
    return ReportBody.model_validate(json.loads(json.dumps(body)))


def _params(start: str, end: str) -> dict[str, Any]:
    return {"regulation": "gdpr", "start": start, "end": end, "numbers": [],
            "sample_size": None}


@pytest.mark.parametrize(("start", "end"), [
    ("0001-01-01", "9999-12-31"),  # the whole calendar
    ("1970-08-23T09:01:41+00:00", "2026-01-01"),  # 56 years: grew past 2 GB rendering
    ("2024-01-01", "2026-01-01"),  # two years
    ("0001-01-01", "0001-02-01"),  # a month the index cannot search (was job_internal)
    ("9999-12-30", "9999-12-31"),
])
def test_periods_out_of_bounds_are_refused(start: str, end: str) -> None:
    with pytest.raises(GatherError) as err:
        ReportRequest.from_json(_params(start, end))
    assert err.value.code == "report_period_invalid"


@pytest.mark.parametrize(("start", "end"), [
    ("2025-01-01", "2026-01-01"), ("2024-01-01", "2025-01-01"),  # a year, a leap year
    ("2026-11-01", "2026-12-01"), ("2026-12-06T08:00:00Z", "2026-12-06T09:00:00Z"),
])
def test_a_year_or_less_is_accepted(start: str, end: str) -> None:
    req = ReportRequest.from_json(_params(start, end))
    assert (req.end - req.start).days <= MAX_PERIOD_DAYS


@pytest.mark.parametrize("body", [
    {"from": 20250101, "to": "2026-01-01"},  # was read as a Unix time (1970-08-23)
    {"from": "2025-01-01", "to": 1767225600},
    {"from": "2025-01-01", "to": "2026-01-01", "sample_size": True},  # was sample 1
    {"from": "2025-01-01", "to": "2026-01-01", "sample_size": "5"},
    {"from": "2025-01-01", "to": "2026-01-01", "numbers": ["+4915112345678"]},
    {"from": "2025-01-01", "to": "2026-01-01", "numbers": ["../../x"]},
    {"from": "2025-01-01", "to": "2026-01-01", "numbers": [""]},
])
def test_wrong_types_and_numbers_fail_validation(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _parse({"regulation": "gdpr", **body})


def test_a_time_without_zone_stays_a_time() -> None:
    # Midnight without a zone was silently read as a date; the route refuses a naive time.
    body = _parse({"regulation": "gdpr", "from": "2026-01-01T00:00:00", "to": "2026-02-01"})
    assert getattr(body.start, "tzinfo", "date") is None


def test_good_body_still_parses() -> None:
    body = _parse({"regulation": "finra", "from": "2026-01-01", "to": "2026-02-01T00:00:00Z",
                   "numbers": ["106540352242922"], "sample_size": 3})
    assert body.numbers == ["106540352242922"] and body.sample_size == 3
