"""Pure media rules: digest and size normalisation, the 7-day life, the durable schedule."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archiver.whatsapp.media import (
    MEDIA_LIFETIME,
    media_deadline,
    next_retry_at,
    normalise_sha256,
    parse_file_size,
    should_retry,
)

DIGEST = hashlib.sha256(b"hello").digest()
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def test_hex_is_lowercased() -> None:
    assert normalise_sha256(DIGEST.hex().upper()) == DIGEST.hex()


def test_base64_becomes_hex() -> None:
    assert normalise_sha256(base64.b64encode(DIGEST).decode()) == DIGEST.hex()


def test_metas_webhook_base64_example() -> None:
    # messages_image.json in the fixtures carries this base64 value.
    value = "SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI="
    assert normalise_sha256(value) == base64.b64decode(value).hex()
    assert len(normalise_sha256(value)) == 64


def test_unpadded_or_urlsafe_base64_is_refused() -> None:
    # Meta sends standard, padded base64; accepting looser forms would read
    # 43-character placeholders (like pywa's) as digests.
    with pytest.raises(ValueError):
        normalise_sha256(base64.b64encode(DIGEST).decode().rstrip("="))
    with pytest.raises(ValueError):
        normalise_sha256(base64.urlsafe_b64encode(b"\xfb" * 32).decode())


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "<HASH>",
        "73298ec14751fhfonf4wfxxxf52f4fb031db3892ff5",  # pywa's docstring placeholder
        DIGEST.hex()[:-1],
        DIGEST.hex() + "0",
        base64.b64encode(DIGEST[:31]).decode(),
        "g" * 64,
    ],
)
def test_malformed_digests_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_sha256(bad)


@given(st.binary(min_size=32, max_size=32))
def test_hex_and_base64_of_any_digest_agree(raw: bytes) -> None:
    assert normalise_sha256(raw.hex()) == normalise_sha256(base64.b64encode(raw).decode())


@pytest.mark.parametrize(
    ("value", "expected"), [("303833", 303833), (61901, 61901), (None, None), (0, 0), (12.0, 12)]
)
def test_file_size_string_or_int(value: object, expected: int | None) -> None:
    assert parse_file_size(value) == expected


@pytest.mark.parametrize("bad", ["-1", -1, True, "12kb", 1.5, [], "<MEDIA_FILE_SIZE>"])
def test_file_size_garbage_is_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_file_size(bad)


def test_deadline_is_seven_days() -> None:
    assert media_deadline(T0) == T0 + timedelta(days=7)
    assert timedelta(days=7) == MEDIA_LIFETIME
    other_zone = T0.astimezone(timezone(timedelta(hours=5)))
    assert media_deadline(other_zone) == media_deadline(T0)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        media_deadline(datetime(2026, 3, 1))
    with pytest.raises(ValueError):
        should_retry(datetime(2026, 3, 1), T0, 0)


def test_should_retry_until_deadline_or_budget() -> None:
    assert should_retry(T0, T0, 0)
    assert should_retry(T0 + timedelta(days=7) - timedelta(seconds=1), T0, 5)
    assert not should_retry(T0 + timedelta(days=7), T0, 5)
    assert not should_retry(T0 + timedelta(hours=1), T0, 3, max_attempts=3)
    with pytest.raises(ValueError):
        should_retry(T0, T0, -1)


def test_next_retry_at_backs_off_and_stops_at_the_deadline() -> None:
    assert next_retry_at(T0, T0, 1) == T0 + timedelta(minutes=1)
    assert next_retry_at(T0, T0, 3) == T0 + timedelta(minutes=4)
    assert next_retry_at(T0, T0, 30) == T0 + timedelta(hours=6)  # capped
    late = T0 + timedelta(days=6, hours=23)
    assert next_retry_at(late, T0, 12) == media_deadline(T0) - timedelta(seconds=1)
    assert next_retry_at(T0 + timedelta(days=8), T0, 2) is None


@given(
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=8)),
    st.integers(min_value=0, max_value=60),
)
def test_next_retry_is_never_in_the_past_nor_past_the_deadline(age: timedelta, n: int) -> None:
    now = T0 + age
    at = next_retry_at(now, T0, n)
    if at is None:
        assert not should_retry(now, T0, n)
    else:
        assert now <= at < media_deadline(T0)
