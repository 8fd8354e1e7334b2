"""Store errors. Adapters convert every vendor exception (minio, urllib3, OSError,
sqlite3) into one of these before it leaves the adapter.

    StoreError
    ├── StoreUnavailable      backend cannot be reached / timed out
    ├── ObjectExists          write-once: the key already has a version
    ├── ObjectNotFound        no such key / version
    ├── ObjectLocked          the server (or the local adapter) refused: retention or legal hold
    ├── RetentionShortening   a retain-until earlier than the current one was asked
    ├── PreconditionFailed    working-state compare-and-swap lost
    └── BucketMisconfigured   evidence bucket without Object Lock or versioning
"""

from __future__ import annotations

from archiver.errors import ArchiverError


class StoreError(ArchiverError):
    code = "store_error"


class StoreUnavailable(StoreError):
    code = "store_unavailable"


class ObjectExists(StoreError):
    code = "object_exists"


class ObjectNotFound(StoreError):
    code = "object_not_found"


class ObjectLocked(StoreError):
    code = "object_locked"


class RetentionShortening(StoreError):
    code = "retention_shortening"


class PreconditionFailed(StoreError):
    code = "precondition_failed"


class BucketMisconfigured(StoreError):
    code = "bucket_misconfigured"
