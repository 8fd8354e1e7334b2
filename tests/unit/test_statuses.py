"""issue 9 #3: statuses are StrEnums, and their values are what earlier versions stored.

The values live in working state (``proc/``, ``holds/``, ``erasures/``, ``mediajobs/``,
``coexistence/``, reviews) and in sealed consent records; a changed value would strand
every stored one. A StrEnum must also serialise exactly like the string it replaces, in
plain JSON and in the canonical JSON (RFC 8785) that record hashes are computed over.
"""

from __future__ import annotations

import json
from enum import StrEnum

import pytest
import rfc8785

from archiver.coexistence import SyncStatus
from archiver.ingest.batch_status import BatchResult, BatchState
from archiver.ingest.consent import ConsentStatus
from archiver.media.worker import MediaJobStatus
from archiver.records.canonical import dumps as canonical_json
from archiver.retention.erasure import ErasureStatus
from archiver.retention.holds import OPEN_STATUSES, HoldStatus
from archiver.retention.reviews import ReviewStatus

PINNED: dict[type[StrEnum], set[str]] = {
    BatchState: {"claimed", "logging", "done", "waiting"},
    BatchResult: {"done", "skipped"},
    HoldStatus: {"placing", "open", "releasing", "released"},
    ErasureStatus: {"running", "refused", "done"},
    ReviewStatus: {"pending", "approved"},
    MediaJobStatus: {"pending", "parked", "logging", "done", "missing", "abandoned"},
    ConsentStatus: {"opt_in", "opt_out", "unknown"},
    SyncStatus: {"calling", "requested", "failed", "unknown", "not_requested"},
}


@pytest.mark.parametrize("enum", list(PINNED), ids=lambda e: e.__name__)
def test_values_are_the_stored_strings(enum: type[StrEnum]) -> None:
    assert {m.value for m in enum} == PINNED[enum]


@pytest.mark.parametrize("enum", list(PINNED), ids=lambda e: e.__name__)
def test_a_member_serialises_like_its_string(enum: type[StrEnum]) -> None:
    for member in enum:
        plain = {"status": member.value}
        assert json.dumps({"status": member}) == json.dumps(plain)
        assert rfc8785.dumps({"status": member}) == rfc8785.dumps(plain)
        assert canonical_json({"status": member}) == canonical_json(plain)
        # a status read back from stored JSON is a plain str and still compares equal
        assert json.loads(json.dumps({"s": member}))["s"] == member


def test_a_hold_read_back_from_json_is_still_open() -> None:
    stored = json.loads(json.dumps({"status": HoldStatus.PLACING}))
    assert stored["status"] in OPEN_STATUSES
    assert "released" not in OPEN_STATUSES
