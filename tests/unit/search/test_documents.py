"""Document validation (search/documents.py) and the mapping it mirrors."""

from __future__ import annotations

import pytest

from search.documents import FIELDS, join_text, validate
from search.errors import InvalidDocument
from search.mapping import MESSAGE_MAPPING


def test_normalises_times_numbers_and_vocabularies() -> None:
    doc = validate({
        "id": 7, "ts": "2024-01-05T12:00:00+02:00", "captured_at": 1704456000,
        "type": "Image", "origin": "Customer", "business_number": "+1 555 000 1111",
        "from": "+49 171", "holds": "case-1", "text": "hi",
    })  # fmt: skip
    assert doc["id"] == "7"
    assert doc["ts"] == "2024-01-05T10:00:00Z"
    assert doc["captured_at"] == "2024-01-05T12:00:00Z"
    assert doc["type"] == "image" and doc["origin"] == "customer"
    assert doc["business_number"] == "15550001111" and doc["from"] == "49171"
    assert doc["holds"] == ["case-1"]


@pytest.mark.parametrize(("doc", "message"), [
    ({"ts": "2024-01-01"}, "'id' is required"),
    ({"id": "a"}, "'ts' is required"),
    ({"id": "a", "ts": "yesterday"}, "'ts' must be an ISO 8601 time"),
    ({"id": "a", "ts": True}, "'ts' must be an ISO 8601 time"),
    ({"id": "a", "ts": ["x"]}, "'ts' must be an ISO 8601 time"),
    ({"id": "a", "ts": "2024-01-01", "colour": "red"}, "unknown document field(s): colour"),
    ({"id": "a", "ts": "2024-01-01", "holds": [1]}, "'holds' must be a list of strings"),
    ({"id": "a", "ts": "2024-01-01", "type": 3}, "'type' must be a string"),
    ({"id": "a", "ts": "2024-01-01", "text": 3}, "'text' must be a string"),
])  # fmt: skip
def test_refuses(doc: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidDocument) as err:
        validate(doc)
    assert message in str(err.value)


def test_mapping_is_strict_and_covers_every_field() -> None:
    assert MESSAGE_MAPPING["dynamic"] == "strict"
    assert set(MESSAGE_MAPPING["properties"]) == FIELDS
    assert MESSAGE_MAPPING["properties"]["text"]["index_options"] == "offsets"


def test_join_text_skips_empty_parts() -> None:
    assert join_text("body", None, "", "file.pdf") == "body\nfile.pdf"
