"""Which records a case's scope covers, streamed from the index (both adapters).

``records_in_scope`` yields record ids, each once:

1. every document the scope's query finds (``model.scope_query``: query, dates, custodian
   contacts) within the case's numbers, page by page through the index's cursor
   (Elasticsearch: point in time + ``search_after``; SQLite: keyset), so no result
   window caps it. Every record kind is a document of its own
   (``archiver.indexing.documents``): messages, echoes, history messages and history
   media, API sends, edits, revokes, reactions, statuses and every other event;
2. the **family** of every message found: the records about it (its edits, revokes,
   reactions and statuses, and the history media delivery of a history placeholder) and,
   for an edit, revoke or reaction found, the message it is about and that message's
   family, even when they fall outside the date range or do not match the query
   themselves: an export shows a message with its history (RSMF puts edits, reactions and
   read receipts on the message event). A family shares a conversation and a message
   ref (``message_ref`` of the message and its statuses and history media,
   ``target_ref`` of edits, revokes and reactions), so it is found by streaming each
   conversation of the hits once.

Attachments (media link records and blobs) are not index documents: an export reads
them with ``CaseService.attachments`` (the holds' attachment view). A record not yet
indexed is not found: run after the follower caught up (``/readyz`` shows its lag).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

from archiver.cases.model import Custodians, Scope, scope_query
from archiver.indexing.documents import MESSAGE_KINDS
from search.port import SearchIndex, SearchRequest

PAGE = 1000  # the adapters' largest page (search._common.MAX_SIZE)


def _pages(index: SearchIndex, request: SearchRequest) -> Iterator[dict[str, Any]]:
    cursor: str | None = None
    while True:
        page = index.search(SearchRequest(
            q=request.q, filters=request.filters, date_from=request.date_from,
            date_to=request.date_to, scope_numbers=request.scope_numbers, sort="time_asc",
            size=PAGE, cursor=cursor,
        ))  # fmt: skip
        for hit in page.hits:
            yield {**hit.doc, "id": hit.id}
        cursor = page.next_cursor
        if not cursor or not page.hits:
            return


def _unit(doc: Mapping[str, Any]) -> str | None:
    """The message a document belongs to: an edit/revoke/reaction's target, else its own
    message ref (a message, its statuses, a history media delivery)."""
    ref = doc.get("target_ref") or doc.get("message_ref")
    return str(ref) if ref else None


def scope_request(case: Mapping[str, Any]) -> SearchRequest:
    scope = Scope.from_json(case["scope"])
    custodians = Custodians.from_json(case.get("custodians") or {})
    numbers = None if scope.numbers is None else list(scope.numbers)
    return SearchRequest(q=scope_query(custodians, scope), scope_numbers=numbers)


def records_in_scope(index: SearchIndex, case: Mapping[str, Any]) -> Iterator[str]:
    """Record ids of the case's scope and their families, each once (see the module)."""
    for record_id, _ in walk_scope(index, case):
        yield record_id


def walk_scope(index: SearchIndex, case: Mapping[str, Any]) -> Iterator[tuple[str, bool]]:
    """``(record id, is_family)``: the scope's own hits first, then their families."""
    request = scope_request(case)
    seen: set[str] = set()
    units: dict[str, set[str]] = defaultdict(set)  # conversation -> message refs found
    for doc in _pages(index, request):
        for rid in (doc["id"], *(doc.get("sources") or ())):
            if rid not in seen:
                seen.add(rid)
                yield rid, False
        unit, conversation = _unit(doc), doc.get("conversation")
        if unit and conversation and (doc.get("kind") in MESSAGE_KINDS
                                      or doc.get("target_ref") or doc.get("kind") == "status"):
            units[str(conversation)].add(unit)
    for conversation in sorted(units):
        wanted = units[conversation]
        family = SearchRequest(filters={"conversation": [conversation]},
                               scope_numbers=request.scope_numbers)  # fmt: skip
        for doc in _pages(index, family):
            if _unit(doc) in wanted:
                for rid in (doc["id"], *(doc.get("sources") or ())):
                    if rid not in seen:
                        seen.add(rid)
                        yield rid, True
