"""The index follows the archive: a durable cursor over the proof log.

The cursor (``index/cursor/<generation>`` in working state) is the next leaf index to
index. ``catch_up`` reads the log from there, turns record leaves into documents and
folds, upserts them (idempotent by id), then advances the cursor by compare-and-swap.
When Elasticsearch is down nothing advances and capture goes on; the lag is
``log size - cursor`` and returns to zero once the index is back.

Folds that target a message not yet indexed wait in working state
(``index/folds/<generation>/<target>``) and are applied when the message arrives.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from archiver.indexing.documents import (
    MESSAGE_KINDS,
    Fold,
    apply_fold,
    folds_for,
    message_document,
)
from archiver.ingest.ports import LogAppender, SubjectKeys
from archiver.keys.errors import KeysError
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.logs import get_logger
from archiver.records.model import Record, RecordError
from archiver.records.pseudonym import Pseudonymizer
from archiver.store.errors import ObjectNotFound, PreconditionFailed
from archiver.store.port import ObjectStore, StateStore
from search.port import SearchIndex

log = get_logger("archiver.indexer")


class IndexFollower:
    def __init__(
        self,
        *,
        log_reader: LogAppender,
        objects: ObjectStore,
        state: StateStore,
        keys: SubjectKeys,
        index: SearchIndex,
        pseudo: Pseudonymizer,
        generation: str = "live",
        on_indexed: Callable[[int], None] | None = None,
    ) -> None:
        self.log = log_reader
        self.objects = objects
        self.state = state
        self.keys = keys
        self.index = index
        self.pseudo = pseudo
        self.generation = generation
        self.on_indexed = on_indexed

    @property
    def _cursor_key(self) -> str:
        return f"index/cursor/{self.generation}"

    def cursor(self) -> int:
        value = self.state.get(self._cursor_key)
        return int(value.value) if value else 0

    def lag(self) -> int:
        return max(0, self.log.size() - self.cursor())

    def _set_cursor(self, old: int, new: int) -> None:
        current = self.state.get(self._cursor_key)
        if current is None:
            self.state.put(self._cursor_key, str(new).encode(), if_absent=True)
        elif int(current.value) == old:
            self.state.put(self._cursor_key, str(new).encode(), if_match=current.token)
        else:
            raise PreconditionFailed("index cursor moved under us")

    def catch_up(self, max_entries: int = 2000) -> int:
        """Index up to ``max_entries`` leaves; return how many leaves were consumed."""
        start = self.cursor()
        size = self.log.size()
        if start >= size:
            return 0
        end = min(size, start + max_entries)
        docs: dict[str, dict[str, Any]] = {}
        folds: list[Fold] = []
        for offset, data in enumerate(self.log.entries(start, end)):
            entry = parse_entry(data)
            if entry.kind is not EntryKind.RECORD:
                continue
            key, version = entry.key, entry.version_id
            assert key is not None and version is not None
            try:
                record = Record.parse(self.objects.get(key, version))
            except ObjectNotFound:
                continue  # disposed since; its tombstone is later in the log
            header = record.header
            try:
                event = record.open(self.keys.get(record.key_id).secret).get("event")
            except (KeysError, RecordError):
                event = None  # crypto-shredded: index only what is not personal
            if header["kind"] in MESSAGE_KINDS:
                docs[record.record_id] = message_document(header, event, start + offset)
            business = (header.get("business") or {}).get("phone_number_id") or "unknown"
            folds.extend(
                folds_for(
                    header,
                    event,
                    lambda wamid, b=business: self.pseudo.record_id(b, "msg:" + wamid),
                )
            )
        self._apply_folds(docs, folds)
        if docs:
            self.index.upsert(docs.values())
        self._set_cursor(start, end)
        if self.on_indexed is not None:
            self.on_indexed(end - start)
        return end - start

    def _fold_key(self, target: str) -> str:
        return f"index/folds/{self.generation}/{target}"

    def _apply_folds(self, docs: dict[str, dict[str, Any]], folds: list[Fold]) -> None:
        # Folds waiting for documents that arrive in this batch.
        for doc_id in list(docs):
            waiting = self.state.get(self._fold_key(doc_id))
            if waiting is not None:
                for item in json.loads(waiting.value):
                    docs[doc_id] = apply_fold(docs[doc_id], Fold(doc_id, item["op"], item["data"]))
        for fold in folds:
            doc = docs.get(fold.target) or self.index.get(fold.target)
            if doc is not None:
                docs[fold.target] = apply_fold(doc, fold)
            else:
                self._park(fold)

    def _park(self, fold: Fold) -> None:
        key = self._fold_key(fold.target)
        for _ in range(10):
            current = self.state.get(key)
            items = json.loads(current.value) if current else []
            item = {"op": fold.op, "data": dict(fold.data)}
            if item in items:
                return
            items.append(item)
            try:
                if current is None:
                    self.state.put(key, json.dumps(items).encode(), if_absent=True)
                else:
                    self.state.put(key, json.dumps(items).encode(), if_match=current.token)
                return
            except PreconditionFailed:
                continue
        raise PreconditionFailed(f"could not park a fold for {fold.target}")
