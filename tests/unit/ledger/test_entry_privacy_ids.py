"""The log's phone-number guard must not refuse identifiers that contain digit runs by
chance: C2SP verifier keys (base64), random hex ids, pseudonyms and ISO 8601 times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from archiver.ledger.entry import EntryKind, make_entry
from archiver.ledger.errors import EntryError
from archiver.ledger.note import Signer

T = datetime(2026, 11, 26, tzinfo=UTC)


def test_many_verifier_keys_are_accepted() -> None:
    # Base64 of a random key holds 7+ digits in a row now and then (CI once hit one).
    for _ in range(300):
        new, old = Signer.generate("wa-archiver.local/log"), Signer.generate("wa.example/log")
        make_entry(
            EntryKind.CHECKPOINT_KEY,
            time=T,
            verifier_key=new.verifier.key_text,
            previous_key=old.verifier.key_text,
        )


def test_a_digit_run_key_text_is_accepted() -> None:
    make_entry(EntryKind.CHECKPOINT_KEY, time=T, verifier_key="log+0a1b2c3d+AQ12345678901234==")


@pytest.mark.parametrize(
    "value",
    [
        "0123456789abcdef0123456789abcdef",
        "s_abcdefghij2345672345672345",
        "2032-11-23T10:00:00.123456Z",
    ],
)
def test_identifiers_are_accepted(value: str) -> None:
    make_entry(EntryKind.VERIFY_RUN, time=T, ref=value)


@pytest.mark.parametrize("value", ["+1 650 555 1234", "16505551234", "tel 4915123456789"])
def test_phone_numbers_are_still_refused(value: str) -> None:
    with pytest.raises(EntryError):
        make_entry(EntryKind.VERIFY_RUN, time=T, ref=value)
