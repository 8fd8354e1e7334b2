"""Which business numbers (``phone_number_id``, the one number identity) a retention
document concerns, so the API can show a number-scoped token only its own.

A hold concerns the numbers it was restricted to when placed (``numbers``: the placing
token's numbers, narrowed to the scope's ``phone_number_id``); ``None`` means every number.
A disposition review concerns the number of the record it is about, read from the
record's clear header (the store is the truth; a review document does not copy it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from archiver.keyspace import REVIEWS_PREFIX
from archiver.retention.common import read_stored_record
from archiver.store.errors import ObjectNotFound
from archiver.store.port import ObjectStore, StateStore


def hold_numbers(doc: Mapping[str, Any]) -> list[str] | None:
    numbers = doc.get("numbers")
    return None if numbers is None else [str(n) for n in numbers]


def review_of(state: StateStore, record_id: str) -> dict[str, Any] | None:
    """The review document of ``record_id`` (any status), or None."""
    value = state.get(REVIEWS_PREFIX + record_id)
    return None if value is None else dict(json.loads(value.value))


def review_numbers(objects: ObjectStore, doc: Mapping[str, Any]) -> list[str] | None:
    """The record's ``phone_number_id``; None when the record is gone or names none."""
    try:
        record = read_stored_record(objects, str(doc["key"]), str(doc["version_id"]))
    except (ObjectNotFound, KeyError):
        return None
    number = record.phone_number_id
    return [number] if number else None
