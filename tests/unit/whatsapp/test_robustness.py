"""parse_delivery never raises: malformed bodies and random mutations of real fixtures."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.whatsapp import EventKind, parse_delivery

from .conftest import webhook_fixtures

_REPLACEMENTS: list[Any] = [None, 0, -1, 2**70, 1.5, "", "x", True, [], {}, [1, "a"], {"a": None}]


def _containers(node: Any, out: list[Any]) -> list[Any]:
    if isinstance(node, dict | list):
        out.append(node)
        for v in node.values() if isinstance(node, dict) else node:
            _containers(v, out)
    return out


def _mutate(doc: Any, rng: random.Random) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 4)):
        conts = _containers(doc, [])
        if not conts:
            return rng.choice(_REPLACEMENTS)
        c = rng.choice(conts)
        if not c:
            continue
        key = rng.choice(list(c.keys()) if isinstance(c, dict) else list(range(len(c))))
        if rng.random() < 0.4:
            del c[key]
        else:
            c[key] = rng.choice(_REPLACEMENTS)
    return doc


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe", b"[]", b"null", b"42", b'"s"', b"{}", b'{"entry": 1}',
     b'{"entry": [1, null, {"changes": [null, 1, {"value": 3}]}]}', b"[" * 100_000,
     b'{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages",'
     b'"value":{"messages":[{"id":"w","type":"text","text":{"body":1e999}}]}}]}]}'],
)
def test_bad_bodies_become_unknown_or_partial(body: bytes) -> None:
    result = parse_delivery(body)
    assert result.events
    assert result.problems or all(e.kind != EventKind.UNKNOWN for e in result.events)


def test_value_only_history_is_unknown(fixtures_root: Path) -> None:
    r = parse_delivery((fixtures_root / "history_declined.value_only.json").read_bytes())
    assert [e.kind for e in r.events] == [EventKind.UNKNOWN]
    assert [p.code for p in r.problems] == ["not_envelope"]


def test_bad_item_does_not_spoil_the_batch(fixtures_root: Path) -> None:
    doc = json.loads((fixtures_root / "messages_text.json").read_bytes())
    msgs = doc["entry"][0]["changes"][0]["value"]["messages"]
    msgs.insert(0, {"type": "text"})
    msgs.append("garbage")
    kinds = [e.kind for e in parse_delivery(json.dumps(doc).encode()).events]
    assert kinds == [EventKind.UNKNOWN, EventKind.MESSAGE, EventKind.UNKNOWN]


@pytest.mark.parametrize("seed", range(8))
def test_random_mutations_never_raise(fixtures_root: Path, seed: int) -> None:
    rng = random.Random(seed)
    for path in webhook_fixtures():
        doc = json.loads(path.read_bytes())
        for _ in range(5):
            parse_delivery(json.dumps(_mutate(doc, rng)).encode())
        raw = bytearray(path.read_bytes())
        for _ in range(3):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        parse_delivery(bytes(raw))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "type", "text", "from", "to", "timestamp", "value", "field",
                         "messages", "statuses", "history", "contacts", "errors", "metadata",
                         "entry", "changes", "object", "threads", "image", "body"]),
        kids, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_arbitrary_json_never_raises(doc: Any) -> None:
    parse_delivery(json.dumps({"object": "whatsapp_business_account", "entry": [doc]}).encode())
    parse_delivery(json.dumps(doc).encode())
