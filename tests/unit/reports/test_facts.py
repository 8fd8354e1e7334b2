"""Facts round-trip through JSON and refuse identifiers that are not pseudonyms."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pytest

from reports.facts import (
    ConsentEvent,
    ConsentKind,
    ErasureFact,
    ErasureStatus,
    FactsError,
    LockCheck,
    LockCheckMode,
    Period,
    ReportFacts,
)
from tests.unit.reports import factory as F


@pytest.mark.parametrize("make", [F.clean_facts, F.violating_facts])
def test_facts_round_trip_through_json(make: object) -> None:
    facts = make()  # type: ignore[operator]
    text = json.dumps(facts.to_dict(), sort_keys=True)
    back = ReportFacts.from_dict(json.loads(text))
    assert back == facts
    assert json.dumps(back.to_dict(), sort_keys=True) == text


def test_from_dict_names_the_bad_field() -> None:
    data = F.clean_facts().to_dict()
    data["records"][3]["origin"] = "carrier_pigeon"
    with pytest.raises(FactsError, match=r"facts\.records\[3\]\.origin"):
        ReportFacts.from_dict(data)
    data = F.clean_facts().to_dict()
    data["surprise"] = 1
    with pytest.raises(FactsError, match="unknown field"):
        ReportFacts.from_dict(data)
    data = F.clean_facts().to_dict()
    data["raw_captures"] = "61"
    with pytest.raises(FactsError, match="raw_captures: expected an integer"):
        ReportFacts.from_dict(data)
    data = F.clean_facts().to_dict()
    del data["lock_check"]
    with pytest.raises(FactsError, match="lock_check"):
        ReportFacts.from_dict(data)
    data = F.clean_facts().to_dict()
    data["records"][5]["subject"] = F.CUSTOMER_PHONES[1]  # a phone number, not a pseudonym
    with pytest.raises(FactsError, match=r"facts\.records\[5\]: .*not a s_… pseudonym"):
        ReportFacts.from_dict(data)
    data = F.clean_facts().to_dict()
    data["integrity"]["checkpoint"]["size"] = True
    with pytest.raises(FactsError, match=r"facts\.integrity\.checkpoint\.size: expected an"):
        ReportFacts.from_dict(data)
    with pytest.raises(FactsError, match="schema"):
        ReportFacts.from_dict({**F.clean_facts().to_dict(), "schema": "other/1"})


@pytest.mark.parametrize("bad", [*F.CUSTOMER_PHONES, F.CUSTOMER_NAMES[0], "s_UPPER234567",
                                 "r_abcdefghij"])
def test_a_subject_must_be_a_pseudonym(bad: str) -> None:
    with pytest.raises(FactsError, match="pseudonym") as caught:
        ConsentEvent(bad, ConsentKind.OPT_IN, F.START)
    assert bad[1:5] not in str(caught.value)  # the error does not echo the identifier


def test_a_refused_erasure_needs_a_reason_code() -> None:
    with pytest.raises(FactsError, match="reason"):
        ErasureFact("er_9", F.BOB, F.START, ErasureStatus.REFUSED, F.START, None)
    with pytest.raises(FactsError, match="lowercase code"):
        ErasureFact("er_9", F.BOB, F.START, ErasureStatus.REFUSED, F.START,
                    "Refused because Maria Schneider asked")


def test_times_must_be_utc_and_period_ordered() -> None:
    with pytest.raises(FactsError, match="UTC"):
        Period(datetime(2026, 1, 1), datetime(2026, 2, 1))  # naive: the point
    cet = timezone(timedelta(hours=1))
    with pytest.raises(FactsError, match="UTC"):
        Period(datetime(2026, 1, 1, tzinfo=cet), F.END)
    with pytest.raises(FactsError, match="after start"):
        Period(F.END, F.START)


def test_lock_check_counts_must_agree() -> None:
    lc = F.clean_facts().lock_check
    with pytest.raises(FactsError, match="number of observations"):
        dataclasses.replace(lc, read=lc.read + 1)
    with pytest.raises(FactsError, match="full check"):
        LockCheck(LockCheckMode.FULL, lc.population, lc.read, None, lc.observations)
    with pytest.raises(FactsError, match="exceeds"):
        dataclasses.replace(lc, population=1)
