"""issue 9 #2: the storage layout lives in ``archiver.keyspace`` and nowhere else.

Two checks. The values are pinned: they are stored, and archives written by earlier
versions must still read, so a changed prefix is a broken archive, not a refactor. And no
module outside the keyspace spells a prefix (plain strings and f-strings alike), so the
layout cannot drift apart again the way nine prefixes once were declared twice.
"""

from __future__ import annotations

import io
import re
import tokenize
from datetime import UTC, datetime
from pathlib import Path

from archiver import keyspace as ks

ROOT = Path(__file__).resolve().parents[2]
KEYSPACE = ROOT / "archiver" / "keyspace.py"

# Every value as earlier releases wrote it (object store, then state store).
PINNED = {
    "RAW_PREFIX": "raw/",
    "REPORTS_PREFIX": "reports/",
    "REPORTS_SCHEDULED_PREFIX": "reports-scheduled/",
    "RECORDS_PREFIX": "records/",
    "MEDIA_OBJECT_PREFIX": "media/",
    "TOMBSTONES_PREFIX": "tombstones/",
    "AUDIT_PREFIX": "audit/",
    "EXPORTS_PREFIX": "exports/",
    "LOG_PREFIX": "log/",
    "CAPTURE_KEYS_PREFIX": "capkeys/",
    "PENDING_PREFIX": "pending/",
    "PENDING_INDEX_READY": "pending-index/v1",
    "PENDING_INDEX_PREFIX": "pending-index/",
    "PROC_PREFIX": "proc/",
    "MEDIA_JOBS_PREFIX": "mediajobs/",
    "MEDIA_LOGGED_PREFIX": "media/logged/",
    "CAPGRANTS_PREFIX": "capgrants/",
    "CONVSUBJECTS_PREFIX": "convsubjects/",
    "CONVSUBJECTS_COMPLETE_KEY": "convsubjects/_complete",
    "NO_SUBJECT": "_none",
    "ALIAS_PREFIX": "subjects/alias/",
    "MERGED_PREFIX": "subjects/merged/",
    "CHILDREN_PREFIX": "subjects/children/",
    "DATA_KEYS_PREFIX": "keys/dk/",
    "SUBJECT_KEYS_PREFIX": "keys/subject/",
    "KEY_GRANTS_PREFIX": "keys/grant/",
    "ERASURES_PREFIX": "erasures/",
    "ERASURES_OPEN_PREFIX": "erasures-open/",
    "HOLDS_PREFIX": "holds/",
    "HOLDS_OPEN_KEY": "holds/_open",
    "HOLD_TARGETS_PREFIX": "hold-targets/",
    "DISPOSITION_PREFIX": "disposition/",
    "REVIEWS_PREFIX": "disposition/reviews/",
    "DISPOSITION_CURSOR_KEY": "disposition/cursor",
    "DISPOSITION_JOURNAL_PREFIX": "disposition/journal/",
    "APPLIED_POLICIES_KEY": "retention/applied_policies",
    "CONSENT_VIEW_PREFIX": "views/consent/",
    "CONSENT_VIEW_CURSOR_KEY": "views/consent/cursor",
    "COEXISTENCE_VIEW_PREFIX": "views/coexistence/",
    "COEXISTENCE_VIEW_CURSOR_KEY": "views/coexistence/cursor",
    "COEXISTENCE_SCOPE_PREFIX": "views/coexistence/_scope/",
    "ATTACHMENTS_CURSOR_KEY": "views/attachments/cursor",
    "ATTACHMENTS_BY_MESSAGE": "views/attachments/msg/",
    "ATTACHMENTS_BY_BLOB": "views/attachments/blob/",
    "COEXISTENCE_PREFIX": "coexistence/",
    "INDEX_ACTIVE_KEY": "index/active",
    "INDEX_CURSOR_PREFIX": "index/cursor/",
    "INDEX_NAMES_PREFIX": "index/names/",
    "INDEX_CONSENT_PREFIX": "index/consent/",
    "INDEX_FOLDS_PREFIX": "index/folds/",
    "LIVE_FOLDS_PREFIX": "index/folds/live/",
    "TOKENS_PREFIX": "tokens/",
    "LEASES_PREFIX": "leases/",
    "JOBS_PREFIX": "jobs/",
    "JOBS_ACTIVE_PREFIX": "jobs-active/",
    "CASES_PREFIX": "cases/",
    "CUSTODY_PREFIX": "cases-custody/",
    "BATES_PREFIX": "cases-bates/",
}


def test_prefix_values_are_pinned() -> None:
    got = {name: getattr(ks, name) for name in PINNED}
    assert got == PINNED


def test_builders_write_the_stored_layout() -> None:
    batch = "20240102T030405.000006Z-abcdefabcdef"
    now = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert ks.raw_key(batch) == f"raw/2024/01/02/{batch}"
    assert ks.record_key("r-ab12") == "records/ab/r-ab12"
    assert ks.media_object_key("own", "ff00") == "media/own/ff00"
    assert ks.tombstone_name("erasure", "abcd") == "erasure/ab/abcd"
    assert ks.audit_key(now, "n1") == "audit/2024/01/02/20240102T030405.000006Z-n1"
    assert ks.checkpoint_key("log/", 5) == "log/checkpoint/00000000000000000005"
    assert ks.checkpoint_pointer_key("log/") == "log/checkpoint"
    assert ks.log_state_key("log/") == "log/state"
    assert ks.log_staging_key("log/", "b1") == "log/staging/b1"
    assert ks.media_job_key("r1", 2) == "mediajobs/r1/2"
    assert ks.media_logged_key("own", "ff") == "media/logged/own/ff"
    assert ks.capgrant_key("s1", batch) == f"capgrants/s1/{batch}"
    assert ks.trace_key("c1", "s1") == "convsubjects/c1/s1"
    assert ks.trace_key("c1", None, "b1") == "convsubjects/c1/_none/b1"
    assert ks.trace_key("c1", None) == "convsubjects/c1/_none"
    assert ks.child_key("a", "b") == "subjects/children/a/b"
    assert ks.data_key_key("k1") == "keys/dk/k1"
    assert ks.subject_keys_key("s1") == "keys/subject/s1"
    assert ks.key_grant_key("s1", "k1") == "keys/grant/s1/k1"
    assert ks.erasure_key("s1", "e1") == "erasures/s1/e1"
    assert ks.erasure_open_key("s1", "e1") == "erasures-open/s1/e1"
    assert ks.consent_view_key("+1 5", "s1", "mk/t") == "views/consent/%2B1%205/s1/mk%2Ft"
    assert ks.coexistence_sync_key("+15", "history") == "coexistence/%2B15/sync/history"
    assert ks.index_cursor_key("live") == "index/cursor/live"
    assert ks.index_subject_key(ks.INDEX_NAMES, "g1", "s1") == "index/names/g1/s1"
    assert ks.index_fold_key("g1", "t1") == "index/folds/g1/t1"
    assert ks.lease_key("media") == "leases/media"
    assert ks.job_key("export", "j1") == "jobs/export/j1"
    assert ks.active_job_key("export", "j1") == "jobs-active/export/j1"
    assert ks.case_key("c1") == "cases/c1"
    assert ks.custody_key("c1", "s1") == "cases-custody/c1/s1"
    assert ks.bates_head_key("c1") == "cases-bates/c1/head"
    assert ks.bates_bucket_key("c1", "0a") == "cases-bates/c1/map/0a"
    assert ks.report_object_key("gdpr", "j1", "pdf") == "reports/gdpr/j1.pdf"
    assert ks.scheduled_report_key("finra", "2026-04") == "reports-scheduled/finra/2026-04"


def _segments() -> tuple[set[str], set[str]]:
    """The first path segments of every keyspace value (``raw/``, ``index/``, ...) and
    every inner segment (``checkpoint/``, ``dk/``, ...) a builder appends to a prefix."""
    values = [v for v in vars(ks).values() if isinstance(v, str) and "/" in v]
    values += [ks.checkpoint_prefix(""), ks.log_staging_prefix(""), ks.log_state_key("/")]
    roots, inner = set(), set()
    for value in values:
        parts = [p for p in value.split("/") if p]
        roots.add(parts[0] + "/")
        inner.update(p + ("/" if i < len(parts) - 1 or value.endswith("/") else "")
                     for i, p in enumerate(parts[1:], 1))
    return roots, inner


# A literal that is nothing but a prefix (``"cases/"``): a new prefix declared outside the
# keyspace, which the roots above cannot know about yet.
_NEW_PREFIX = re.compile(r"[a-z][a-z0-9_-]*(/[a-z0-9_-]+)*/")


def _body(token: str) -> tuple[bool, str]:
    """(is an f-string, the text between the quotes) of one STRING token."""
    head = re.match(r"[rRbBfFuU]*", token)
    assert head is not None
    prefix = head.group(0).lower()
    quoted = token[len(prefix):]
    quote = quoted[:3] if quoted[:3] in ('"""', "'''") else quoted[:1]
    return "f" in prefix, quoted[len(quote):-len(quote)]


def spelled_keys(source: str) -> list[tuple[int, str]]:
    """Every string literal in ``source`` that spells a key prefix: a plain or f-string
    starting with a keyspace root, or an f-string appending an inner segment to a
    placeholder (``f"{prefix}checkpoint/{n}"``)."""
    roots, inner = _segments()
    appended = tuple("}" + seg for seg in roots | inner if seg.endswith("/"))
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.STRING:
            continue
        is_f, body = _body(tok.string)
        if (
            body.startswith(tuple(roots))
            or (is_f and any(a in body for a in appended))
            or (not is_f and _NEW_PREFIX.fullmatch(body))
        ):
            found.append((tok.start[0], tok.string))
    return found


def test_the_scanner_catches_each_way_of_spelling_a_key() -> None:
    planted = '\n'.join([
        'a = "capkeys/"',
        'b = f"leases/{name}"',
        'c = "index/active"',
        "d = f'{prefix}checkpoint/{size:020d}'",
        'e = f"{base}staging/{batch}"',
        'ok = f"{ptr}/metadata"',
        'ok2 = "application/json"',
        'ok3 = f"tile/{level}/{n}"',
        'f = "cases-bates/"',
    ])
    assert [line for line, _ in spelled_keys(planted)] == [1, 2, 3, 4, 5, 9]


def test_no_module_outside_the_keyspace_spells_a_key_prefix() -> None:
    files = sorted([*ROOT.glob("archiver/**/*.py"), *ROOT.glob("search/**/*.py")])
    assert len(files) > 100  # the scan really walked the tree
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {text}"
        for path in files if path != KEYSPACE
        for line, text in spelled_keys(path.read_text())
    ]
    assert offenders == []
