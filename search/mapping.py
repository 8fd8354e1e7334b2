"""The Elasticsearch mapping of a message document (fields: ``search.documents``).

``dynamic: strict`` so an unexpected field is an error, never a silent dynamic mapping;
``search.documents.validate`` rejects the same fields before either adapter sees them.
Only analysers in the server's core are used (the build's ES has no analysis-common):
``standard`` tokenises and lower-cases; there is no diacritic folding (see docs/search.md).
"""

from __future__ import annotations

from typing import Any

_KW: dict[str, Any] = {"type": "keyword"}
_DATE: dict[str, Any] = {"type": "date", "format": "strict_date_optional_time||epoch_second"}

MESSAGE_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "id": _KW,
        "record_id": _KW,
        "kind": _KW,
        # offsets: phrase/proximity need positions; offsets make highlighting cheap.
        "text": {"type": "text", "analyzer": "standard", "index_options": "offsets"},
        "business_number": _KW,
        "phone_number_id": _KW,
        "contact": _KW,
        "contact_user_id": _KW,
        "contact_username": _KW,
        "contact_name": {"type": "text", "analyzer": "standard", "fields": {"raw": _KW}},
        "from": _KW,
        "to": _KW,
        "direction": _KW,
        "origin": _KW,
        "type": _KW,
        "ts": _DATE,
        "captured_at": _DATE,
        "status": _KW,
        # Kept in _source for display; never queried, so any shape is allowed.
        "status_times": {"type": "object", "enabled": False},
        "media_mime": _KW,
        "media_size": {"type": "long"},
        "media_sha256": _KW,
        "policy": _KW,
        "retain_until": _DATE,
        "holds": _KW,
        "consent": _KW,
        "conversation": _KW,
        "edited": {"type": "boolean"},
        "revoked": {"type": "boolean"},
        "leaf_index": {"type": "long"},
        # Threads (archiver.indexing): pseudonymous message refs link replies, edits,
        # revokes and reactions; the folded lists are display-only (never queried).
        "subject": _KW,
        "message_ref": _KW,
        "reply_to": _KW,
        "contact_profile_name": {"type": "text", "analyzer": "standard", "fields": {"raw": _KW}},
        "edits": {"type": "object", "enabled": False},
        "reactions": {"type": "object", "enabled": False},
        "revoked_at": _DATE,
        "edited_at": _DATE,
        "target_ref": _KW,
        # Every other event kind (archiver.indexing.documents.event_document): the
        # event's own name (template decision, account event, call event, preference),
        # Meta's error codes, and a status's pricing category, each filterable.
        "event": _KW,
        "error_codes": _KW,
        "pricing_category": _KW,
        # The records one document stands for (a history placeholder and its media).
        "sources": _KW,
    },
}

INDEX_SETTINGS: dict[str, Any] = {
    "number_of_shards": 1,
    "number_of_replicas": 0,
    # Exact totals are always tracked; a deep page stays cheap through search_after,
    # so the from+size window can stay at its default.
    # Erasure must not leave deleted text in segments: let only_expunge_deletes merge any
    # segment with a deleted document, not only those above the 10 % default.
    "merge.policy.expunge_deletes_allowed": 0,
}
