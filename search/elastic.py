"""``SearchIndex`` on Elasticsearch 8.19 (sync client).

The index is reached through an alias (``wa-messages``) that points at one concrete index
``<alias>-<UTC timestamp>``; a rebuild bulk-loads a fresh index and moves the alias in one
atomic ``_aliases`` call (no downtime). Deep pages use a point in time + ``search_after``
behind an opaque cursor; totals are exact (``track_total_hits: true``). Deletion scrolls
ids and bulk-deletes them (the build's server has no ``_delete_by_query``).

Every client exception becomes a ``search.errors`` type here: unreachable or overloaded
-> ``IndexUnavailable``; anything ES refuses -> ``SearchError`` with its reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError
from elasticsearch.helpers import BulkIndexError, streaming_bulk
from elasticsearch.serializer import OrjsonSerializer

from search import es_dsl
from search._common import (
    FACETS,
    check,
    decode_cursor,
    encode_cursor,
    fingerprint,
    render_highlight,
)
from search.documents import validate
from search.errors import IndexUnavailable, InvalidRequest, SearchError
from search.mapping import INDEX_SETTINGS, MESSAGE_MAPPING
from search.port import Document, Hit, RebuildableIndex, SearchRequest, SearchResult

Refresh = bool | Literal["wait_for"]
_UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504})


def _reason(err: ApiError) -> str:
    info: Any = err.info
    if isinstance(info, dict):
        error = info.get("error")
        if isinstance(error, dict):
            causes = error.get("root_cause") or [error]
            return str(causes[0].get("reason") or error.get("type"))
        if error:
            return str(error)
    return str(err.message)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except BulkIndexError as e:
        first = e.errors[0] if e.errors else {}
        raise SearchError(f"bulk write refused: {len(e.errors)} error(s), first: {first}") from e
    except ApiError as e:
        if e.status_code in _UNAVAILABLE_STATUSES:
            raise IndexUnavailable(f"elasticsearch unavailable: {_reason(e)}") from e
        raise SearchError(f"elasticsearch refused the request: {_reason(e)}") from e
    except TransportError as e:  # connection refused, timeout, TLS: the node is unreachable
        raise IndexUnavailable(f"elasticsearch unreachable: {e}") from e


class ElasticIndex:
    """``SearchIndex`` over the alias ``alias`` of a cluster.

    ``refresh`` is passed to every write: ``"wait_for"`` (default) makes a write visible
    to search before returning (read-your-writes for the archive); ``False`` is for bulk
    rebuilds, followed by ``refresh()``.
    """

    name = "elasticsearch"

    def __init__(
        self,
        client_or_url: Elasticsearch | str,
        alias: str = "wa-messages",
        *,
        refresh: Refresh = "wait_for",
        pit_keep_alive: str = "5m",
        request_timeout: float = 30.0,
    ) -> None:
        if isinstance(client_or_url, str):
            # orjson: a fifth of the stdlib's cost per bulk line and per response, which
            # is most of the client's CPU when it shares a machine with the node.
            client_or_url = Elasticsearch(
                client_or_url, request_timeout=request_timeout, max_retries=1,
                serializers={"application/json": OrjsonSerializer()},
            )  # fmt: skip
        self.client = client_or_url
        self.alias = alias
        self.refresh_mode: Refresh = refresh
        self.pit_keep_alive = pit_keep_alive

    # ---- lifecycle ---------------------------------------------------------------------

    def ping(self) -> None:
        with _errors():
            self.client.options(request_timeout=5).cluster.health()

    def current_indices(self) -> list[str]:
        """The concrete indices behind the alias (normally exactly one)."""
        with _errors():
            try:
                return sorted(self.client.indices.get_alias(name=self.alias).body)
            except NotFoundError:
                return []

    def create_fresh_index(self) -> str:
        """Create ``<alias>-<timestamp>`` with the mapping, not yet behind the alias."""
        name = f"{self.alias}-{datetime.now(UTC):%Y%m%d%H%M%S%f}"
        with _errors():
            self.client.indices.create(
                index=name, mappings=MESSAGE_MAPPING, settings=INDEX_SETTINGS
            )
        return name

    def ensure_index(self) -> None:
        """Create a concrete index and the alias if the alias is missing; idempotent.

        Two processes racing here may both create an index; the alias then points at
        two, and the later-named one is dropped so exactly one remains.
        """
        if self.current_indices():
            self._add_new_fields()
            return
        with _errors():
            if self.client.indices.exists(index=self.alias):
                raise SearchError(f"'{self.alias}' is a concrete index, expected an alias")
        name = self.create_fresh_index()
        with _errors():
            self.client.indices.put_alias(index=name, name=self.alias)
        behind = self.current_indices()
        if len(behind) > 1 and name != behind[0]:
            with _errors():
                self.client.indices.delete(index=name)

    def _add_new_fields(self) -> None:
        """An index made by an older version gains the fields added since (ES adds a new
        field in place; a changed one is refused, and needs ``archiver reindex``). Old
        documents stay as they were until the reindex rebuilds them."""
        with _errors():
            self.client.indices.put_mapping(
                index=self.alias, dynamic="strict", properties=MESSAGE_MAPPING["properties"]
            )

    def swap_alias(self, new_name: str) -> list[str]:
        """Atomically point the alias at ``new_name`` and delete the indices it left.

        Returns the deleted index names.
        """
        old = [i for i in self.current_indices() if i != new_name]
        actions: list[dict[str, Any]] = [{"add": {"index": new_name, "alias": self.alias}}]
        actions += [{"remove_index": {"index": i}} for i in old]
        with _errors():
            self.client.indices.update_aliases(actions=actions)
        return old

    def refresh(self) -> None:
        with _errors():
            self.client.indices.refresh(index=self.alias)

    def deferred(self) -> ElasticIndex:
        """The same index (client, alias) writing without waiting for a refresh: a write
        becomes searchable at the next scheduled refresh (about a second). For a writer
        that does not read its own writes, the index follower's loop: ``wait_for`` costs
        it half a refresh interval per bulk. Readers that need an earlier view call
        ``refresh()``."""
        return ElasticIndex(
            self.client, alias=self.alias, refresh=False, pit_keep_alive=self.pit_keep_alive
        )

    def force_merge_expunge(self) -> None:
        """Merge away deleted documents so erased text leaves the segment files."""
        with _errors():
            self.client.indices.forcemerge(index=self.alias, only_expunge_deletes=True)

    # ---- writes ------------------------------------------------------------------------

    def upsert(self, docs: Iterable[Document], *, index: str | None = None) -> int:
        """Bulk index by ``id`` (a second write replaces the first). ``index`` targets a
        fresh index during a rebuild. Raises ``InvalidDocument`` before sending a bad doc."""
        target = index or self.alias
        actions = (
            {"_op_type": "index", "_index": target, "_id": d["id"], "_source": d}
            for d in map(validate, docs)
        )
        written = 0
        with _errors():
            for ok, _item in streaming_bulk(
                self.client, actions, chunk_size=1000, refresh=self.refresh_mode,
                max_retries=2, raise_on_error=True,
            ):  # fmt: skip
                written += int(ok)
        return written

    def delete_ids(self, ids: Iterable[str]) -> int:
        """Delete by id; an id that is not there is not an error. Returns the count deleted."""
        actions = ({"_op_type": "delete", "_index": self.alias, "_id": i} for i in ids)
        deleted = 0
        with _errors():
            for ok, item in streaming_bulk(
                self.client, actions, chunk_size=1000, refresh=self.refresh_mode,
                raise_on_error=False,
            ):  # fmt: skip
                status = item.get("delete", {}).get("status", 500)
                if ok:
                    deleted += 1
                elif status != 404:
                    raise SearchError(f"delete refused: {item}")
        return deleted

    def delete_matching(self, request: SearchRequest) -> int:
        """Delete every document ``request`` finds (ignoring its sort, size and cursor)."""
        node = check(request)
        body_query = es_dsl.query(node, request)
        return self.delete_ids(self._scan_ids(body_query))

    def _scan_ids(self, body_query: dict[str, Any]) -> Iterator[str]:
        with _errors():
            pit = self.client.open_point_in_time(index=self.alias, keep_alive=self.pit_keep_alive)[
                "id"
            ]
        try:
            after: list[Any] | None = None
            while True:
                with _errors():
                    resp = self.client.search(
                        query=body_query, size=1000, source=False,
                        sort=[{"_shard_doc": "asc"}], search_after=after,
                        pit={"id": pit, "keep_alive": self.pit_keep_alive},
                        track_total_hits=False,
                    )  # fmt: skip
                pit = resp.get("pit_id", pit)
                hits = resp["hits"]["hits"]
                if not hits:
                    return
                for h in hits:
                    yield h["_id"]
                after = hits[-1]["sort"]
        finally:
            self._close_pit(pit)

    def scan(self, request: SearchRequest, fields: Sequence[str],
             page: int = 5000) -> Iterator[dict[str, Any]]:
        """Every document ``request`` finds (its query, filters, dates and scope; not its
        sort, size or cursor), as ``fields`` only, in index order: one point in time, pages
        of ``page`` with ``search_after`` (bulk readers such as report gathering, where
        ``search`` pages of 1,000 full documents sorted by time cost several times more)."""
        node = check(request)
        yield from self._scan_query(es_dsl.query(node, request), fields, page)

    # ---- report aggregates (archiver.reporting.gather on large archives) ----------------

    def _report_query(self, request: SearchRequest, max_leaf: int,
                      extra: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        # The request's dates and scope, plus: logged inside the pinned tree.
        node = check(request)
        q = es_dsl.query(node, request)
        q["bool"]["filter"] = [*q["bool"]["filter"], {"range": {"leaf_index": {"lt": max_leaf}}},
                               *extra]
        return q

    def report_counts(self, request: SearchRequest, max_leaf: int) -> Iterator[
            tuple[str | None, str | None, str | None, str, int, int]]:
        """(kind, origin, direction, number, UTC day in epoch ms, count) of the documents
        ``request`` finds with a leaf below ``max_leaf``: one composite aggregation, paged.
        Documents without a number are not records and are not counted; a missing kind,
        origin or direction is None."""
        query = self._report_query(request, max_leaf)
        sources = [
            {"kind": {"terms": {"field": "kind", "missing_bucket": True}}},
            {"origin": {"terms": {"field": "origin", "missing_bucket": True}}},
            {"direction": {"terms": {"field": "direction", "missing_bucket": True}}},
            {"number": {"terms": {"field": "phone_number_id"}}},
            {"day": {"date_histogram": {"field": "ts", "calendar_interval": "1d",
                                        "time_zone": "UTC"}}},
        ]
        after: dict[str, Any] | None = None
        while True:
            comp: dict[str, Any] = {"sources": sources, "size": 2000}
            if after:
                comp["after"] = after
            with _errors():
                resp = self.client.search(index=self.alias, query=query, size=0,
                                          track_total_hits=False,
                                          aggs={"c": {"composite": comp}})
            agg = resp["aggregations"]["c"]
            for b in agg["buckets"]:
                k = b["key"]
                yield (k["kind"], k["origin"], k["direction"], str(k["number"]),
                       int(k["day"]), int(b["doc_count"]))
            after = agg.get("after_key")
            if not after or not agg["buckets"]:
                return

    def report_activity(self, request: SearchRequest, max_leaf: int,
                        resolution_s: int) -> list[tuple[str, list[tuple[int, int]]]]:
        """Per number: (first, last) record time in epoch ms of each non-empty bucket of
        ``resolution_s`` seconds, in time order. A stretch without records longer than the
        resolution lies between two consecutive buckets, so it is known exactly."""
        query = self._report_query(request, max_leaf)
        aggs = {"n": {"terms": {"field": "phone_number_id", "size": 10_000},
                      "aggs": {"h": {"date_histogram": {
                          "field": "ts", "fixed_interval": f"{resolution_s}s",
                          "min_doc_count": 1},
                          "aggs": {"lo": {"min": {"field": "ts"}},
                                   "hi": {"max": {"field": "ts"}}}}}}}
        with _errors():
            resp = self.client.search(index=self.alias, query=query, size=0,
                                      track_total_hits=False, aggs=aggs)
        out = []
        for nb in resp["aggregations"]["n"]["buckets"]:
            spans = [(int(b["lo"]["value"]), int(b["hi"]["value"]))
                     for b in nb["h"]["buckets"] if b["doc_count"]]
            out.append((str(nb["key"]), spans))
        return out

    def report_scan(self, request: SearchRequest, max_leaf: int, fields: Sequence[str], *,
                    kinds: Sequence[str] | None = None, exists: str | None = None,
                    types: Sequence[str] | None = None, overdue_before: str | None = None,
                    message_refs: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """The few documents of ``request`` (leaf below ``max_leaf``) that one report
        section needs: by kind, type, a field present, message ref, or retained until
        before ``overdue_before`` (a document without retain-until: its time before it)."""
        extra: list[dict[str, Any]] = []
        if kinds is not None:
            extra.append({"terms": {"kind": sorted(kinds)}})
        if types is not None:
            extra.append({"terms": {"type": list(types)}})
        if exists is not None:
            extra.append({"exists": {"field": exists}})
        if message_refs is not None:
            extra.append({"terms": {"message_ref": list(message_refs)}})
        if overdue_before is not None:
            extra.append({"bool": {"minimum_should_match": 1, "should": [
                {"range": {"retain_until": {"lt": overdue_before}}},
                {"bool": {"must_not": [{"exists": {"field": "retain_until"}}],
                          "filter": [{"range": {"ts": {"lt": overdue_before}}}]}},
            ]}})
        yield from self._scan_query(self._report_query(request, max_leaf, extra), fields)

    def report_leaf_range(self, request: SearchRequest, max_leaf: int) -> tuple[int, int] | None:
        """The lowest and highest leaf index of the documents ``request`` finds (below
        ``max_leaf``); None when there are none."""
        with _errors():
            resp = self.client.search(
                index=self.alias, query=self._report_query(request, max_leaf), size=0,
                track_total_hits=False, aggs={"lo": {"min": {"field": "leaf_index"}},
                                              "hi": {"max": {"field": "leaf_index"}}})
        lo, hi = resp["aggregations"]["lo"]["value"], resp["aggregations"]["hi"]["value"]
        return None if lo is None or hi is None else (int(lo), int(hi))

    def report_by_leaves(self, request: SearchRequest, max_leaf: int, leaves: Sequence[int],
                         fields: Sequence[str]) -> list[dict[str, Any]]:
        """The documents of ``request`` (leaf below ``max_leaf``) whose leaf is one of
        ``leaves`` (at most 10,000): the lock check's sample candidates."""
        query = self._report_query(request, max_leaf,
                                   [{"terms": {"leaf_index": list(leaves)}}])
        with _errors():
            resp = self.client.search(index=self.alias, query=query, size=len(leaves),
                                      source_includes=list(fields), track_total_hits=False)
        return [h.get("_source") or {} for h in resp["hits"]["hits"]]

    def _scan_query(self, body_query: dict[str, Any], fields: Sequence[str],
                    page: int = 5000) -> Iterator[dict[str, Any]]:
        with _errors():
            pit = self.client.open_point_in_time(index=self.alias,
                                                 keep_alive=self.pit_keep_alive)["id"]
        try:
            after: list[Any] | None = None
            while True:
                with _errors():
                    resp = self.client.search(
                        query=body_query, size=page, source_includes=list(fields),
                        sort=[{"_shard_doc": "asc"}], search_after=after,
                        pit={"id": pit, "keep_alive": self.pit_keep_alive},
                        track_total_hits=False,
                        filter_path=["pit_id", "hits.hits._source", "hits.hits.sort"],
                    )  # fmt: skip
                pit = resp.get("pit_id", pit)
                hits = (resp.get("hits") or {}).get("hits") or []
                if not hits:
                    return
                for h in hits:
                    yield h.get("_source") or {}
                after = hits[-1]["sort"]
        finally:
            self._close_pit(pit)

    def _close_pit(self, pit: str) -> None:
        # Best effort: an unclosed PIT expires by itself after keep_alive.
        with contextlib.suppress(ApiError, TransportError):
            self.client.close_point_in_time(id=pit)

    # ---- reads -------------------------------------------------------------------------

    def get(self, doc_id: str) -> dict[str, Any] | None:
        with _errors():
            try:
                return dict(self.client.get(index=self.alias, id=doc_id)["_source"])
            except NotFoundError:
                return None

    def count(self, request: SearchRequest) -> int:
        node = check(request)
        with _errors():
            return int(
                self.client.count(index=self.alias, query=es_dsl.query(node, request))["count"]
            )

    def search(self, request: SearchRequest) -> SearchResult:
        node = check(request)
        state = decode_cursor(request.cursor, request) if request.cursor else None
        body: dict[str, Any] = {
            "query": es_dsl.query(node, request),
            "sort": es_dsl.sort(request),
            # One extra hit tells whether another page exists.
            "size": request.size + 1 if request.size else 0,
            "track_total_hits": True,
        }
        if request.facets:
            body["aggs"] = es_dsl.aggs(request)
        if request.highlight and request.size:
            body["highlight"] = es_dsl.HIGHLIGHT
        # The first page runs on the live index and its cursor carries no point in time:
        # most searches are never paged, and a PIT per search would cost a round trip and
        # an open search context each. The second page opens the PIT that every later page
        # shares; the explicit ``id`` tiebreaker keeps search_after exact across the switch.
        pit: str | None = None
        if state is not None:
            if not isinstance(state.get("sa"), list):
                raise InvalidRequest("malformed cursor")
            if state.get("pit") is None:
                with _errors():
                    pit = str(self.client.open_point_in_time(
                        index=self.alias, keep_alive=self.pit_keep_alive
                    )["id"])  # fmt: skip
            else:
                pit = str(state["pit"])
            body["pit"] = {"id": pit, "keep_alive": self.pit_keep_alive}
            body["search_after"] = state["sa"]
        resp = self._search_body(body, pit)
        pit = resp.get("pit_id", pit)
        raw_hits = resp["hits"]["hits"]
        more = len(raw_hits) > request.size
        raw_hits = raw_hits[: request.size]
        cursor = None
        if more:
            cursor = encode_cursor(
                {"f": fingerprint(request), "pit": pit, "sa": raw_hits[-1]["sort"]}
            )
        elif pit is not None:
            self._close_pit(pit)
        return SearchResult(
            total=int(resp["hits"]["total"]["value"]),
            hits=[self._hit(h) for h in raw_hits],
            next_cursor=cursor,
            facets=self._facets(resp.get("aggregations", {})),
        )

    def _search_body(self, body: dict[str, Any], pit: str | None) -> dict[str, Any]:
        try:
            with _errors():
                if pit is None:
                    return dict(self.client.search(index=self.alias, **body))
                return dict(self.client.search(**body))
        except SearchError as e:
            if pit is not None and isinstance(e.__cause__, NotFoundError):
                raise InvalidRequest("the cursor has expired; run the search again") from e
            raise

    @staticmethod
    def _hit(h: dict[str, Any]) -> Hit:
        fragments = h.get("highlight", {}).get("text", [])
        return Hit(
            id=h["_id"],
            doc=dict(h["_source"]),
            score=h.get("_score"),
            highlights={"text": [render_highlight(f) for f in fragments]} if fragments else {},
        )

    @staticmethod
    def _facets(aggs: dict[str, Any]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for name, agg in aggs.items():
            key = "key_as_string" if FACETS.get(name) == "ts" else "key"
            out[name] = {str(b[key]): int(b["doc_count"]) for b in agg["buckets"]}
        return out


if TYPE_CHECKING:  # mypy proves the adapter matches the port; nothing runs

    def _conforms(ix: ElasticIndex) -> RebuildableIndex:
        return ix
