"""The ``SearchIndex`` contract: the SAME cases against ElasticIndex (real server at
``ARCHIVER_TEST_ES_URL``) and SqliteIndex (a file in tmp_path)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from search.elastic import ElasticIndex
from search.errors import InvalidDocument, InvalidRequest, QuerySyntaxError
from search.port import SearchRequest
from search.sqlite import SqliteIndex

pytestmark = pytest.mark.integration

B1, B2 = "15550001111", "15550002222"  # display numbers (an attribute)
P1, P2 = "106540352242911", "106540352242922"  # their phone_number_ids (the identity)
PNID = {B1: P1, B2: P2}


def _doc(i: int, number: str, ts: str, text: str, **extra: Any) -> dict[str, Any]:
    base = {
        "id": f"m{i}", "record_id": f"r{i}", "kind": "message", "ts": ts, "text": text,
        "business_number": number, "phone_number_id": PNID[number], "type": "text",
        "origin": "customer",
        "direction": "inbound", "contact": f"4917{i % 3}", "conversation": f"c{i % 2}",
        "from": f"4917{i % 3}", "to": number, "status": "delivered",
    }  # fmt: skip
    base.update(extra)
    return base


OUT = {"origin": "business_app", "direction": "outbound"}
CORPUS = [
    _doc(1, B1, "2024-01-05T10:00:00Z", "I want a refund for my card please"),
    _doc(2, B1, "2024-01-05T11:00:00Z", "We will refund the card within 5 days", **OUT),
    _doc(3, B1, "2024-01-10T09:30:00Z", "photo of the receipt", type="image",
         media_mime="image/jpeg", media_size=1234),
    _doc(4, B2, "2024-01-20T08:00:00Z", "refund card blocked"),
    _doc(5, B2, "2024-02-01T12:00:00Z", "Your card was refunded yesterday",
         origin="business_api", direction="outbound"),
    _doc(6, B2, "2023-12-15T18:00:00Z", "Olá, preciso de reembolso do cartão", origin="history"),
    _doc(7, B1, "2024-02-10T07:00:00Z", "Die Rückerstattung für die Karte"),
    _doc(8, B1, "2024-02-11T16:45:00Z", "invoice.pdf refund policy document", type="document",
         holds=["case-1"], policy="finra-17a4"),
    _doc(9, B2, "2024-01-25T10:00:00Z", "buy cheap stuff now spam"),
    _doc(10, B1, "2024-01-26T10:00:00Z", "card refund <b>now</b>", status="read"),
]  # fmt: skip


@pytest.fixture(params=["sqlite", "elasticsearch"])
def make_index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A factory of empty, ensured indexes of the parametrized adapter."""
    made: list[Any] = []

    def make() -> Any:
        if request.param == "sqlite":
            ix: Any = SqliteIndex(tmp_path / f"{uuid.uuid4().hex}.db")
        else:
            url = request.getfixturevalue("es_url")
            ix = ElasticIndex(url, alias=f"test-{uuid.uuid4().hex[:12]}")
        ix.ensure_index()
        made.append(ix)
        return ix

    yield make
    for ix in made:
        if isinstance(ix, ElasticIndex):
            for name in ix.current_indices():
                ix.client.indices.delete(index=name)
        else:
            ix.close()


@pytest.fixture
def index(make_index: Any) -> Any:
    ix = make_index()
    assert ix.upsert(CORPUS) == len(CORPUS)
    return ix


def ids(ix: Any, q: str = "", **kw: Any) -> set[str]:
    result = ix.search(SearchRequest(q=q, size=100, **kw))
    assert result.total == len(result.hits)
    return {h.id for h in result.hits}


def test_ensure_is_idempotent_and_ping(index: Any) -> None:
    index.ensure_index()
    index.ping()
    assert index.count(SearchRequest()) == len(CORPUS)


def test_upsert_by_id_replaces(index: Any) -> None:
    changed = dict(CORPUS[0], text="entirely different words")
    index.upsert([changed, changed])
    assert index.count(SearchRequest()) == len(CORPUS)
    doc = index.get("m1")
    assert doc is not None and doc["text"] == "entirely different words"
    assert "m1" not in ids(index, "refund")
    assert ids(index, "entirely") == {"m1"}
    assert index.get("nope") is None


def test_invalid_documents_are_refused(index: Any) -> None:
    with pytest.raises(InvalidDocument, match="surprise"):
        index.upsert([dict(CORPUS[0], surprise=1)])
    with pytest.raises(InvalidDocument, match="ts"):
        index.upsert([{"id": "x"}])


@pytest.mark.parametrize(("q", "expected"), [
    ("refund", {"m1", "m2", "m4", "m8", "m10"}),
    ("REFUND card", {"m1", "m2", "m4", "m10"}),
    ('"refund card"', {"m4"}),
    ('"refund card"~3', {"m1", "m2", "m4", "m10"}),
    ("refund*", {"m1", "m2", "m4", "m5", "m8", "m10"}),
    ("refund AND NOT card", {"m8"}),
    ("refund -card", {"m8"}),
    ("(receipt OR spam) -cheap", {"m3"}),
    ("receipt OR spam", {"m3", "m9"}),
    ("type:image", {"m3"}),
    ("type:IMAGE OR origin:history", {"m3", "m6"}),
    ("direction:outbound", {"m2", "m5"}),
    ("hold:case-1", {"m8"}),
    ("policy:finra-17a4 refund", {"m8"}),
    ("status:read", {"m10"}),
    ('from:"+49 171"', {"m1", "m4", "m7", "m10"}),
    ("contact:49172 card", {"m2", "m5"}),
    (f"number:{P2} refund*", {"m4", "m5"}),
    ("conversation:c0 refund", {"m2", "m4", "m8", "m10"}),
    ("date:[2024-01-01 TO 2024-01-31]", {"m1", "m2", "m3", "m4", "m9", "m10"}),
    ("date:{2024-01-05 TO 2024-01-26}", {"m3", "m4", "m9"}),
    ("date>=2024-02-01", {"m5", "m7", "m8"}),
    ("date<2024-01-01", {"m6"}),
    ("date:2024-01-05", {"m1", "m2"}),
    ("date>2024-01-05T10:00:00Z card", {"m2", "m4", "m5", "m10"}),
    ("Rückerstattung", {"m7"}),
    ("reembolso cartão", {"m6"}),
    ("", {d["id"] for d in CORPUS}),
    ("-refund* -card", {"m3", "m6", "m7", "m9"}),
])  # fmt: skip
def test_query_syntax(index: Any, q: str, expected: set[str]) -> None:
    assert ids(index, q) == expected
    assert index.count(SearchRequest(q=q)) == len(expected)


def test_request_filters_and_dates(index: Any) -> None:
    assert ids(index, "refund", filters={"number": [P1]}) == {"m1", "m2", "m8", "m10"}
    assert ids(index, "", filters={"type": ["image", "document"], "number": [P1]}) == {
        "m3", "m8"}  # fmt: skip
    # ``number`` is the phone_number_id; the display number is its own field.
    assert ids(index, "refund", filters={"number": [B1]}) == set()
    assert ids(index, "refund", filters={"display_number": ["+1 555 000 1111"]}) == {
        "m1", "m2", "m8", "m10"}  # fmt: skip
    assert ids(index, f"refund number:{P2}") == ids(index, "refund display_number:" + B2) == {
        "m4"}  # fmt: skip
    assert ids(index, "card", date_from="2024-01-20", date_to="2024-02-01") == {"m4", "m10"}


def test_scope_restricts_hits_totals_and_facets(index: Any) -> None:
    result = index.search(
        SearchRequest(
            q="card", scope_numbers=[P2], facets=["number", "display_number", "type"], size=100
        )
    )
    assert {h.id for h in result.hits} == {"m4", "m5"}
    assert result.total == 2
    assert result.facets["number"] == {P2: 2}
    assert result.facets["display_number"] == {B2: 2}
    # Scope is by phone_number_id only: the display number scopes nothing in.
    assert index.count(SearchRequest(q="card", scope_numbers=[B2])) == 0
    assert index.count(SearchRequest(q="card", scope_numbers=[])) == 0


def test_facets(index: Any) -> None:
    result = index.search(
        SearchRequest(facets=["type", "origin", "direction", "number", "day"], size=0)
    )
    assert result.total == len(CORPUS) and result.hits == [] and result.next_cursor is None
    assert result.facets["type"] == {"text": 8, "image": 1, "document": 1}
    assert result.facets["origin"] == {
        "customer": 7,
        "business_app": 1,
        "business_api": 1,
        "history": 1,
    }
    assert result.facets["direction"] == {"inbound": 8, "outbound": 2}
    assert result.facets["number"] == {P1: 6, P2: 4}
    assert result.facets["day"] == {
        "2023-12-15": 1, "2024-01-05": 2, "2024-01-10": 1, "2024-01-20": 1, "2024-01-25": 1,
        "2024-01-26": 1, "2024-02-01": 1, "2024-02-10": 1, "2024-02-11": 1}  # fmt: skip


def test_highlights_are_marked_and_escaped(index: Any) -> None:
    result = index.search(SearchRequest(q="refund now", highlight=True, size=10))
    assert [h.id for h in result.hits] == ["m10"]
    (fragment,) = result.hits[0].highlights["text"]
    assert "<em>refund</em>" in fragment
    assert "&lt;b&gt;<em>now</em>&lt;/b&gt;" in fragment
    plain = index.search(SearchRequest(q="refund", size=10))
    assert all(not h.highlights for h in plain.hits)


def test_sort_orders(index: Any) -> None:
    newest = index.search(SearchRequest(q="refund", size=10))
    assert [h.id for h in newest.hits] == ["m8", "m10", "m4", "m2", "m1"]
    oldest = index.search(SearchRequest(q="refund", size=10, sort="time_asc"))
    assert [h.id for h in oldest.hits] == ["m1", "m2", "m4", "m10", "m8"]
    best = index.search(SearchRequest(q="refund card", size=10, sort="relevance"))
    assert {h.id for h in best.hits} == {"m1", "m2", "m4", "m10"}
    assert all(h.score is not None for h in best.hits)


@pytest.mark.parametrize("sort", ["time", "time_asc", "relevance"])
def test_cursor_walks_every_page_once(make_index: Any, sort: str) -> None:
    ix = make_index()
    # Many equal timestamps: the id tiebreak must keep pages disjoint.
    docs = [_doc(i, B1 if i % 3 else B2, f"2024-03-{1 + i % 5:02d}T00:00:00Z",
                 "refund " * (1 + i % 4) + f"word{i}") for i in range(237)]  # fmt: skip
    ix.upsert(docs)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = ix.search(SearchRequest(q="refund", size=20, sort=sort, cursor=cursor))  # type: ignore[arg-type]
        assert page.total == 237
        seen += [h.id for h in page.hits]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 12
    assert len(seen) == len(set(seen)) == 237


def test_exact_totals_beyond_ten_thousand(make_index: Any) -> None:
    ix = make_index()
    n = 10_050
    ix.upsert(_doc(i, B1 if i % 2 else B2, "2024-04-01T00:00:00Z", f"bulk message {i}")
              for i in range(n))  # fmt: skip
    result = ix.search(SearchRequest(q="bulk", size=1, facets=["number"]))
    assert result.total == n
    assert result.facets["number"] == {P1: n // 2, P2: n - n // 2}
    assert ix.count(SearchRequest(q="message")) == n


def test_delete_matching_and_ids(index: Any) -> None:
    assert index.delete_matching(SearchRequest(q="refund", scope_numbers=[P2])) == 1
    assert index.get("m4") is None
    assert index.count(SearchRequest()) == len(CORPUS) - 1
    assert index.delete_ids(["m1", "m1", "missing"]) == 1
    assert ids(index, "refund") == {"m2", "m8", "m10"}
    index.force_merge_expunge()
    assert index.count(SearchRequest()) == len(CORPUS) - 2


def test_bad_requests(index: Any) -> None:
    with pytest.raises(QuerySyntaxError) as err:
        index.search(SearchRequest(q='refund AND ("card'))
    assert err.value.position == 12
    with pytest.raises(QuerySyntaxError, match="unknown field 'form'"):
        index.count(SearchRequest(q="form:123"))
    with pytest.raises(InvalidRequest, match="unknown filter"):
        index.search(SearchRequest(filters={"colour": ["red"]}))
    with pytest.raises(InvalidRequest, match="unknown facet"):
        index.search(SearchRequest(facets=["colour"]))
    first = index.search(SearchRequest(q="refund", size=1))
    assert first.next_cursor is not None
    with pytest.raises(InvalidRequest, match="different query"):
        index.search(SearchRequest(q="card", size=1, cursor=first.next_cursor))
    with pytest.raises(InvalidRequest, match="malformed"):
        index.search(SearchRequest(q="card", cursor="%%%"))


def test_reindex_into_fresh_index_and_swap(index: Any) -> None:
    request = SearchRequest(q="refund* OR card", size=100, facets=["type", "day"])
    before = index.search(request)
    fresh = index.create_fresh_index()
    assert index.upsert(CORPUS, index=fresh) == len(CORPUS)
    index.refresh()
    index.swap_alias(fresh)
    after = index.search(request)
    assert [h.id for h in after.hits] == [h.id for h in before.hits]
    assert after.total == before.total and after.facets == before.facets
    index.upsert([_doc(99, B1, "2024-05-01T00:00:00Z", "after the swap")])
    assert ids(index, "swap") == {"m99"}


def test_documented_differences(index: Any) -> None:
    """Pins the rows of docs/search.md "Where the adapters differ" so the doc stays true."""
    folds = index.name == "sqlite"
    assert ids(index, "cartao") == ({"m6"} if folds else set())
    unordered = index.name == "sqlite"
    assert ids(index, '"refund card"~1') == ({"m2", "m4", "m10"} if unordered else {"m2", "m4"})


def test_hindi_words_stay_whole(make_index: Any) -> None:
    ix = make_index()
    ix.upsert([_doc(1, B1, "2024-01-01T00:00:00Z", "मुझे धनवापसी चाहिए"),
               _doc(2, B1, "2024-01-01T00:00:00Z", "धन वापसी")])  # fmt: skip
    assert ids(ix, "धनवापसी") == {"m1"}
    assert ids(ix, '"धन वापसी"') == {"m2"}
    hit = ix.search(SearchRequest(q="धनवापसी", highlight=True)).hits[0]
    assert hit.highlights["text"] == ["मुझे <em>धनवापसी</em> चाहिए"]


# ---- every event kind, names and usernames (issue 15, findings 14 and 17) ------------

EVENTS = [
    _doc(21, B1, "2025-06-28T20:34:48Z", "failed 131049 This message was not delivered",
         kind="status", type="status", status="failed", error_codes=["131049"],
         direction="outbound", origin="meta"),
    _doc(22, B1, "2025-06-15T23:27:53Z", "sent marketing PMP regular", kind="status",
         type="status", status="sent", pricing_category="marketing", direction="outbound",
         origin="meta"),
    _doc(23, B1, "2022-12-21T17:47:04Z", "status RINGING", kind="call", type="call",
         event="status", status="ringing", origin="meta", direction="outbound"),
    _doc(24, B2, "2025-06-30T01:39:08Z", "APPROVED UTILITY order_confirmation",
         kind="template_update", type="template_update", event="approved", origin="meta"),
    _doc(25, B2, "2025-02-12T00:43:44Z", "2593109 History sync is turned off",
         kind="history_error", type="history_error", error_codes=["2593109"], origin="meta"),
]  # fmt: skip
NAMES = [
    _doc(26, B1, "2025-06-08T20:59:43Z", "Does it come in another color?",
         contact_username="@realsheenanelson", contact_profile_name="Sheena Nelson",
         contact_name="Sheena Nelson"),
    _doc(27, B1, "2025-06-09T10:00:00Z", "hello", contact="16505551234",
         contact_name="Pablo Morales", contact_profile_name="Pablo M."),
]  # fmt: skip


@pytest.fixture
def events_index(make_index: Any) -> Any:
    ix = make_index()
    assert ix.upsert(CORPUS + NAMES + EVENTS) == len(CORPUS) + len(NAMES) + len(EVENTS)
    return ix


@pytest.fixture
def names_index(make_index: Any) -> Any:
    ix = make_index()  # message documents only: fields every version of the index knows
    assert ix.upsert(CORPUS + NAMES) == len(CORPUS) + len(NAMES)
    return ix


@pytest.mark.parametrize(("q", "expected"), [
    ("kind:status", {"m21", "m22"}),
    ("kind:STATUS status:failed", {"m21"}),
    ("type:call", {"m23"}),
    ("type:call status:RINGING", {"m23"}),
    ("RINGING", {"m23"}),
    ("event:approved", {"m24"}),
    ("kind:template_update APPROVED", {"m24"}),
    ("error:131049", {"m21"}),
    ("131049", {"m21"}),
    ("error:2593109 OR error:131049", {"m21", "m25"}),
    ("pricing:MARKETING", {"m22"}),
    ("kind:message card -refund", {"m5"}),
    ("kind:message contact:realsheenanelson", {"m26"}),
])  # fmt: skip
def test_event_kinds(events_index: Any, q: str, expected: set[str]) -> None:
    assert ids(events_index, q) == expected
    assert events_index.count(SearchRequest(q=q)) == len(expected)


@pytest.mark.parametrize(("q", "expected"), [
    ('contact:"Pablo Morales"', {"m27"}),
    ('contact:"pablo morales"', {"m27"}),
    ("contact:Morales", {"m27"}),
    ('contact:"Pablo M."', {"m27"}),
    ('contact:"Sheena Nelson"', {"m26"}),
    ("contact:realsheenanelson", {"m26"}),
    ("contact:@realsheenanelson", {"m26"}),
    ("contact:16505551234", {"m27"}),
    ('contact:"Morales Pablo"', set()),
    ("contact:49172", {"m2", "m5", "m8", "m26"}),
])  # fmt: skip
def test_contact_names_and_usernames(names_index: Any, q: str, expected: set[str]) -> None:
    assert ids(names_index, q) == expected
    assert names_index.count(SearchRequest(q=q)) == len(expected)


def test_event_filters_facets_and_lists(events_index: Any) -> None:
    assert ids(events_index, "", filters={"kind": ["call", "template_update"]}) == {"m23", "m24"}
    assert ids(events_index, "", filters={"error": ["2593109"]}) == {"m25"}
    assert ids(events_index, "", filters={"event": ["APPROVED"]}) == {"m24"}
    facets = events_index.search(SearchRequest(facets=["kind"], size=0)).facets["kind"]
    assert facets == {"message": len(CORPUS) + len(NAMES), "status": 2, "call": 1,
                      "template_update": 1, "history_error": 1}  # fmt: skip
    assert events_index.get("m21")["error_codes"] == ["131049"]
    with pytest.raises(InvalidDocument, match="error_codes"):
        events_index.upsert([dict(EVENTS[0], error_codes=[131049])])


def test_names_follow_upserts_and_deletes(names_index: Any) -> None:
    doc = names_index.get("m26")
    assert doc is not None and doc["contact_username"] == "realsheenanelson"
    names_index.upsert([dict(NAMES[-1], contact_name="Pablo Moreno")])
    assert ids(names_index, 'contact:"Pablo Morales"') == set()
    assert ids(names_index, "contact:Moreno") == {"m27"}
    names_index.delete_ids(["m27"])
    assert ids(names_index, "contact:Moreno") == set()


_NEW_FIELDS = ("event", "error_codes", "pricing_category", "sources")


@pytest.mark.parametrize("backend", ["sqlite", "elasticsearch"])
def test_an_index_made_before_the_event_fields_gains_them(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """An index an older version made (no event fields) takes the new documents after
    ``ensure_index``; ``archiver reindex`` then rebuilds the old events."""
    import sqlite3

    from search.mapping import INDEX_SETTINGS, MESSAGE_MAPPING

    if backend == "sqlite":
        path = tmp_path / "old.db"
        with sqlite3.connect(path) as db:  # the schema as it was before issue 15
            db.executescript(
                "CREATE TABLE docs (rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
                'ts INTEGER NOT NULL, business_number TEXT, "from" TEXT, "to" TEXT, '
                "type TEXT, origin TEXT, direction TEXT, status TEXT, conversation TEXT, "
                "contact TEXT, contact_user_id TEXT, contact_username TEXT, policy TEXT, "
                "kind TEXT, holds TEXT NOT NULL DEFAULT '[]', doc TEXT NOT NULL);"
                "CREATE VIRTUAL TABLE fts USING fts5(text);"
            )
        ix: Any = SqliteIndex(path)
    else:
        ix = ElasticIndex(request.getfixturevalue("es_url"), alias=f"test-{uuid.uuid4().hex[:12]}")
        old = {**MESSAGE_MAPPING, "properties": {
            k: v for k, v in MESSAGE_MAPPING["properties"].items() if k not in _NEW_FIELDS}}
        ix.client.indices.create(index=f"{ix.alias}-old", mappings=old, settings=INDEX_SETTINGS)
        ix.client.indices.put_alias(index=f"{ix.alias}-old", name=ix.alias)
    try:
        ix.ensure_index()
        assert ix.upsert(CORPUS[:2] + EVENTS + NAMES) == 2 + len(EVENTS) + len(NAMES)
        assert ids(ix, "error:131049") == {"m21"}
        assert ids(ix, 'contact:"Pablo Morales"') == {"m27"}
        assert ids(ix, "", filters={"kind": ["message"]}) == {"m1", "m2", "m26", "m27"}
    finally:
        if isinstance(ix, ElasticIndex):
            for index_name in ix.current_indices():
                ix.client.indices.delete(index=index_name)
        else:
            ix.close()
