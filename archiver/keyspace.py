"""The storage layout: every object-key and state-key prefix, and every builder of a key.

One file, the way tessera keeps every path in ``api/layout/paths.go``: nobody else spells
a prefix (``tests/unit/test_keyspace.py`` checks the source tree for that), so a reader
finds the whole layout here and a change to it is one diff. Pure: no I/O, no imports of
the stores. **These strings are stored**: archives written by earlier versions must still
read, so a value never changes; add a new prefix instead (the same test pins each value).

Two stores (``archiver.store.port``):

- the **object store** (evidence: write-once, under retention locks, versioned);
- the **state store** (working state: small, mutable, compare-and-set).

Object store

=====================  ===================================================================
``raw/``               captured webhook batches, byte for byte: ``raw/YYYY/MM/DD/<batch>``
``records/``           canonical records: ``records/<id[2:4]>/<id>``
``media/``             encrypted media envelopes: ``media/<owner>/<plaintext sha256>``
``tombstones/``        disposal and erasure tombstones: ``tombstones/<kind>/<h[:2]>/<h>``
``audit/``             the audit trail, NDJSON batches: ``audit/YYYY/MM/DD/<time>Z-<nonce>``
``reports/``           signed audit reports and twins: ``reports/<regulation>/<id>.pdf|.json``
``exports/``           what an export package proves (no content), one per attempt:
                       ``exports/<case>/<export id>-<attempt>-<nonce>.json``
``log/``               the transparency log: tiles, entry bundles and signed checkpoints
=====================  ===================================================================

The log's tile paths below ``log/`` (``tile/<L>/<N>``, ``tile/entries/<N>``, ``.p/<W>``)
stay with the ledger in ``archiver.ledger.tiles``: they are a published format (C2SP
tlog-tiles) that outside verifiers read, not our layout to rearrange. The log takes its
root as ``prefix`` (default :data:`LOG_PREFIX`); the state and checkpoint keys under it
are built here.

State store

==========================  ==============================================================
``log/``                    the log's sequencing state, staging bundles, checkpoint pointer
``capkeys/``                wrapped capture key of each raw batch (per delivery slot)
``pending/``                raw batches not processed yet: object key and time
``pending-index/v1``        marker: the pending index covers every batch captured before it
``proc/``                   per raw batch: processing status and leaf numbers
``mediajobs/``              media downloads to do: ``mediajobs/<record id>/<n>``
``media/logged/``           blobs whose ``media`` leaf is logged: ``<owner>/<sha256>``
``capgrants/``              raw slots naming a subject: ``capgrants/<subject>/<batch>``
``convsubjects/``           conversation traces: ``convsubjects/<conversation>/<subject>``
``subjects/alias/``         HMAC of an alias -> subject pseudonym
``subjects/merged/``        a merged subject -> the subject it resolves to
``subjects/children/``      merge tree edges: ``subjects/children/<low>/<high>``
``subjects/epoch``          a counter of merges (caches of "not merged" check it)
``keys/dk/``                wrapped data keys (a tombstone once shredded)
``keys/subject/``           a subject's key list
``keys/grant/``             capture keys granted to a subject: ``<subject>/<key id>``
``keys/epoch``              raised by every shred before key material goes (key caches)
``erasures/``               erasure procedures: ``erasures/<subject>/<id>``
``erasures-open/``          empty markers of unfinished erasures (same names)
``holds/``                  the hold registry; ``holds/_open`` indexes the open holds
``hold-targets/``           messages a hold holds, by message ref: ``<hold id>/<m_…>``
``disposition/``            review queue (``reviews/``), journal (``journal/``), ``cursor``
``retention/``              ``retention/applied_policies``: fingerprint of the last apply
``views/consent/``          consent view: ``<business>/<subject>/<purpose>``, ``cursor``
``views/coexistence/``      per business number, ``_scope/`` account events, ``cursor``
``views/attachments/``      attachment index: ``msg/``, ``blob/``, ``cursor``
``coexistence/``            per business number: sync requests
``index/``                  search follower: ``active``, ``cursor/<gen>``, ``names/``,
                            ``consent/`` (``<gen>/<subject>``), ``folds/<gen>/<target>``
``tokens/``                 API token hashes
``leases/``                 job leases
``jobs/``                   durable jobs: ``jobs/<kind>/<id>`` (CAS)
``jobs-active/``            one marker per unfinished job: ``jobs-active/<kind>/<id>``
``cases/``                  a case document: ``cases/<case id>`` (CAS)
``cases-custody/``          chain of custody, written once: ``<case id>/<ns:020d>-<rand>``
``cases-bates/``            Bates numbers: ``<case id>/head``, ``<case id>/map/<bb>``
``reports-scheduled/``      scheduled report runs: ``<regulation>/<YYYY-MM>`` -> job id
==========================  ==============================================================

:data:`SHREDDABLE_STATE` names the state prefixes whose old values must be gone once
erasure deletes or rewrites them (key material, derived copies of sealed content, job
parameters naming a contact). With ``ARCHIVER_STATE=postgres`` they stay on the object or
SQLite state store (``archiver.store.state_route``): a database keeps old row versions.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

# ----------------------------------------------------------------------- object store

RAW_PREFIX = "raw/"
RECORDS_PREFIX = "records/"
MEDIA_OBJECT_PREFIX = "media/"
TOMBSTONES_PREFIX = "tombstones/"
AUDIT_PREFIX = "audit/"
EXPORTS_PREFIX = "exports/"
LOG_PREFIX = "log/"  # object store (tiles, checkpoints) and state store (sequencing)

# Tombstone kinds written by erasure (disposition uses the disposed object's kind).
ERASURE_TOMBSTONE_KIND = "erasure"


def raw_key(batch_id: str) -> str:
    """``raw/YYYY/MM/DD/<batch>``: batch ids start with their capture date."""
    return f"{RAW_PREFIX}{batch_id[0:4]}/{batch_id[4:6]}/{batch_id[6:8]}/{batch_id}"


def record_key(record_id: str) -> str:
    return f"{RECORDS_PREFIX}{record_id[2:4]}/{record_id}"


def media_object_key(owner: str, plaintext_sha256: str) -> str:
    return f"{MEDIA_OBJECT_PREFIX}{owner}/{plaintext_sha256}"


def tombstone_name(kind: str, digest: str) -> str:
    """The name below ``tombstones/`` (``write_tombstone`` adds the prefix)."""
    return f"{kind}/{digest[:2]}/{digest}"


def export_statement_key(case_id: str, export_id: str, attempt: int, nonce: str) -> str:
    return f"{EXPORTS_PREFIX}{case_id}/{export_id}-{attempt}-{nonce}.json"


def audit_key(now: datetime, nonce: str) -> str:
    return f"{AUDIT_PREFIX}{now:%Y/%m/%d}/{now:%Y%m%dT%H%M%S.%f}Z-{nonce}"


def checkpoint_key(log_prefix: str, size: int) -> str:
    """A signed checkpoint object (object store), by tree size."""
    return f"{checkpoint_prefix(log_prefix)}{size:020d}"


def checkpoint_prefix(log_prefix: str) -> str:
    return f"{log_prefix}checkpoint/"


# ------------------------------------------------------------------------ state store

def log_state_key(log_prefix: str) -> str:
    """The log's sequencing state (size, root, the batch being written)."""
    return f"{log_prefix}state"


def log_staging_prefix(log_prefix: str) -> str:
    return f"{log_prefix}staging/"


def log_staging_key(log_prefix: str, batch: str) -> str:
    return f"{log_staging_prefix(log_prefix)}{batch}"


def checkpoint_pointer_key(log_prefix: str) -> str:
    """The state key naming the latest signed checkpoint object."""
    return f"{log_prefix}checkpoint"


# Capture and processing
CAPTURE_KEYS_PREFIX = "capkeys/"
PENDING_PREFIX = "pending/"
# Set once the pending index covers every batch captured before it existed.
PENDING_INDEX_READY = "pending-index/v1"
PENDING_INDEX_PREFIX = "pending-index/"
PROC_PREFIX = "proc/"

# Media
MEDIA_JOBS_PREFIX = "mediajobs/"
MEDIA_LOGGED_PREFIX = f"{MEDIA_OBJECT_PREFIX}logged/"


def media_jobs_of(record_id: str) -> str:
    """The prefix of one record's media jobs."""
    return f"{MEDIA_JOBS_PREFIX}{record_id}/"


def media_job_key(record_id: str, index: int) -> str:
    return f"{media_jobs_of(record_id)}{index}"


def media_logged_key(owner: str, sha256_hex: str) -> str:
    return f"{MEDIA_LOGGED_PREFIX}{owner}/{sha256_hex}"


# Subjects: indexes of records written while ingesting
CAPGRANTS_PREFIX = "capgrants/"
CONVSUBJECTS_PREFIX = "convsubjects/"
CONVSUBJECTS_COMPLETE_KEY = f"{CONVSUBJECTS_PREFIX}_complete"
NO_SUBJECT = "_none"  # a trace of a record without a subject of its own
SUBJECTS_PREFIX = "subjects/"
ALIAS_PREFIX = f"{SUBJECTS_PREFIX}alias/"
MERGED_PREFIX = f"{SUBJECTS_PREFIX}merged/"
CHILDREN_PREFIX = f"{SUBJECTS_PREFIX}children/"
SUBJECTS_EPOCH_KEY = f"{SUBJECTS_PREFIX}epoch"


def capgrants_of(subject: str) -> str:
    return f"{CAPGRANTS_PREFIX}{subject}/"


def capgrant_key(subject: str, batch_id: str) -> str:
    return f"{capgrants_of(subject)}{batch_id}"


def conversation_traces(conversation: str) -> str:
    """The prefix of one conversation's traces."""
    return f"{CONVSUBJECTS_PREFIX}{conversation}/"


def trace_key(conversation: str, subject: str | None, batch: str | None = None) -> str:
    """The trace of a record naming ``subject``; a subject-less record's names its raw
    ``batch`` instead (the lookup reads that batch's records)."""
    if subject:
        return f"{conversation_traces(conversation)}{subject}"
    if batch:
        return f"{conversation_traces(conversation)}{NO_SUBJECT}/{batch}"
    return f"{conversation_traces(conversation)}{NO_SUBJECT}"


def children_of(node: str) -> str:
    return f"{CHILDREN_PREFIX}{node}/"


def child_key(low: str, high: str) -> str:
    return f"{children_of(low)}{high}"


# Keys
KEYS_PREFIX = "keys/"
DATA_KEYS_PREFIX = f"{KEYS_PREFIX}dk/"
SUBJECT_KEYS_PREFIX = f"{KEYS_PREFIX}subject/"
KEY_GRANTS_PREFIX = f"{KEYS_PREFIX}grant/"
# A counter every destruction of key material raises first (KeyStore.session caches).
KEYS_EPOCH_KEY = f"{KEYS_PREFIX}epoch"


def data_key_key(key_id: str) -> str:
    return f"{DATA_KEYS_PREFIX}{key_id}"


def subject_keys_key(subject: str) -> str:
    return f"{SUBJECT_KEYS_PREFIX}{subject}"


def key_grants_of(subject: str) -> str:
    return f"{KEY_GRANTS_PREFIX}{subject}/"


def key_grant_key(subject: str, key_id: str) -> str:
    return f"{key_grants_of(subject)}{key_id}"


# Retention
ERASURES_PREFIX = "erasures/"  # the procedures: erasures/<subject>/<id>
# One empty marker per procedure not yet done or refused: erasures-open/<subject>/<id>.
ERASURES_OPEN_PREFIX = "erasures-open/"
# One empty marker per done procedure that still keeps a shared raw slot's capture key
# (a hold, an obligation, another number, a batch not logged yet): erasures-kept/<subject>/<id>.
ERASURES_KEPT_PREFIX = "erasures-kept/"
HOLDS_PREFIX = "holds/"
HOLDS_OPEN_KEY = f"{HOLDS_PREFIX}_open"
# One empty marker per hold whose family pass left part of the index lag to the
# holds-family job (``family_tail`` on the hold): the job lists these, not every hold.
HOLD_TAILS_PREFIX = f"{HOLDS_PREFIX}_tails/"
# One empty marker per message (its ``message_ref``) a hold holds: a later edit, revoke,
# reaction, status or history media of it is held too (one GET per arrival and hold).
HOLD_TARGETS_PREFIX = "hold-targets/"
DISPOSITION_PREFIX = "disposition/"
REVIEWS_PREFIX = f"{DISPOSITION_PREFIX}reviews/"
DISPOSITION_CURSOR_KEY = f"{DISPOSITION_PREFIX}cursor"  # log size at the last complete run
DISPOSITION_JOURNAL_PREFIX = f"{DISPOSITION_PREFIX}journal/"  # one per disposal in progress
APPLIED_POLICIES_KEY = "retention/applied_policies"  # fingerprint of the last complete apply


def hold_targets_of(hold_id: str) -> str:
    return f"{HOLD_TARGETS_PREFIX}{hold_id}/"


def hold_tail_key(hold_id: str) -> str:
    return f"{HOLD_TAILS_PREFIX}{hold_id}"


def hold_target_key(hold_id: str, message_ref: str) -> str:
    return f"{hold_targets_of(hold_id)}{quote(message_ref, safe='')}"


def erasures_of(subject: str) -> str:
    return f"{ERASURES_PREFIX}{subject}/"


def erasure_key(subject: str, erasure_id: str) -> str:
    return f"{erasures_of(subject)}{erasure_id}"


def erasure_open_key(subject: str, erasure_id: str) -> str:
    return f"{ERASURES_OPEN_PREFIX}{subject}/{erasure_id}"


def erasure_kept_key(subject: str, erasure_id: str) -> str:
    return f"{ERASURES_KEPT_PREFIX}{subject}/{erasure_id}"


# Views (followers of the log)
VIEWS_PREFIX = "views/"
VIEW_CURSOR = "cursor"  # the name of a view's cursor below its prefix
CONSENT_VIEW_PREFIX = f"{VIEWS_PREFIX}consent/"
CONSENT_VIEW_CURSOR_KEY = f"{CONSENT_VIEW_PREFIX}{VIEW_CURSOR}"
COEXISTENCE_VIEW_PREFIX = f"{VIEWS_PREFIX}coexistence/"
COEXISTENCE_VIEW_CURSOR_KEY = f"{COEXISTENCE_VIEW_PREFIX}{VIEW_CURSOR}"
# Account events by waba:<id> / display:<digits>.
COEXISTENCE_SCOPE_PREFIX = f"{COEXISTENCE_VIEW_PREFIX}_scope/"
ATTACHMENTS_VIEW_PREFIX = f"{VIEWS_PREFIX}attachments/"
ATTACHMENTS_CURSOR_KEY = f"{ATTACHMENTS_VIEW_PREFIX}{VIEW_CURSOR}"
ATTACHMENTS_BY_MESSAGE = f"{ATTACHMENTS_VIEW_PREFIX}msg/"
ATTACHMENTS_BY_BLOB = f"{ATTACHMENTS_VIEW_PREFIX}blob/"
COEXISTENCE_PREFIX = "coexistence/"


def consent_view_key(business: str, subject: str, purpose: str) -> str:
    return f"{CONSENT_VIEW_PREFIX}{quote(business, safe='')}/{subject}/{quote(purpose, safe='')}"


def coexistence_sync_key(phone_number_id: str, sync_type: str) -> str:
    """A business number's last sync request: ``coexistence/<number>/sync/<type>``."""
    return f"{COEXISTENCE_PREFIX}{quote(phone_number_id, safe='')}/sync/{sync_type}"


# Search index follower
INDEX_PREFIX = "index/"
INDEX_ACTIVE_KEY = f"{INDEX_PREFIX}active"  # the live generation's name
INDEX_CURSOR_PREFIX = f"{INDEX_PREFIX}cursor/"
INDEX_NAMES = "names"  # per-subject memory kinds (index_subject_key)
INDEX_CONSENT = "consent"
INDEX_NAMES_PREFIX = f"{INDEX_PREFIX}{INDEX_NAMES}/"  # contact-sync names: <gen>/<subject>
INDEX_CONSENT_PREFIX = f"{INDEX_PREFIX}{INDEX_CONSENT}/"  # consent state: <gen>/<subject>
INDEX_FOLDS_PREFIX = f"{INDEX_PREFIX}folds/"  # parked folds: <gen>/<target>
LIVE_GENERATION = "live"
LIVE_FOLDS_PREFIX = f"{INDEX_FOLDS_PREFIX}{LIVE_GENERATION}/"


def index_cursor_key(generation: str) -> str:
    return f"{INDEX_CURSOR_PREFIX}{generation}"


def index_subject_key(kind: str, generation: str, subject: str) -> str:
    """Per-subject follower memory; ``kind`` is :data:`INDEX_NAMES` or :data:`INDEX_CONSENT`."""
    return f"{INDEX_PREFIX}{kind}/{generation}/{subject}"


def index_fold_key(generation: str, target: str) -> str:
    return f"{INDEX_FOLDS_PREFIX}{generation}/{target}"


# Service
TOKENS_PREFIX = "tokens/"
LEASES_PREFIX = "leases/"


def lease_key(name: str) -> str:
    return f"{LEASES_PREFIX}{name}"


# Durable jobs
JOBS_PREFIX = "jobs/"
JOBS_ACTIVE_PREFIX = "jobs-active/"


def jobs_of(kind: str) -> str:
    return f"{JOBS_PREFIX}{kind}/"


def job_key(kind: str, job_id: str) -> str:
    return f"{jobs_of(kind)}{job_id}"


def active_jobs_of(kind: str) -> str:
    return f"{JOBS_ACTIVE_PREFIX}{kind}/"


def active_job_key(kind: str, job_id: str) -> str:
    return f"{active_jobs_of(kind)}{job_id}"


# Cases
CASES_PREFIX = "cases/"
CUSTODY_PREFIX = "cases-custody/"
BATES_PREFIX = "cases-bates/"


def case_key(case_id: str) -> str:
    return CASES_PREFIX + case_id


def custody_prefix(case_id: str) -> str:
    return f"{CUSTODY_PREFIX}{case_id}/"


def custody_key(case_id: str, stamp: str) -> str:
    return f"{custody_prefix(case_id)}{stamp}"


def bates_head_key(case_id: str) -> str:
    return f"{BATES_PREFIX}{case_id}/head"


def bates_bucket_key(case_id: str, bucket: str) -> str:
    return f"{BATES_PREFIX}{case_id}/map/{bucket}"


# Signed audit reports (archiver.reporting)
REPORTS_PREFIX = "reports/"  # object store: the signed PDF and its twin, under lock
REPORTS_SCHEDULED_PREFIX = "reports-scheduled/"  # state store: one marker per run


# Working state whose old values erasure must be able to destroy: never on a store that
# keeps old versions of a row (PostgreSQL: dead tuples, WAL, replicas). Every prefix
# archiver.retention.erasure.DERIVED_STATE names is under one of these (a test checks);
# jobs/ because erasure redacts a job's parameters in place (JobService.redact).
SHREDDABLE_STATE: tuple[str, ...] = (
    KEYS_PREFIX,
    CAPTURE_KEYS_PREFIX,
    INDEX_NAMES_PREFIX,
    INDEX_FOLDS_PREFIX,
    MEDIA_JOBS_PREFIX,
    JOBS_PREFIX,
)


def report_object_key(regulation: str, report_id: str, extension: str) -> str:
    return f"{REPORTS_PREFIX}{regulation}/{report_id}.{extension}"


def scheduled_report_key(regulation: str, month: str) -> str:
    return f"{REPORTS_SCHEDULED_PREFIX}{regulation}/{month}"
