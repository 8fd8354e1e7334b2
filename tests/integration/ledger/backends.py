"""Build the two store backends from a small JSON-able config, so that separate worker
processes open exactly the same log as the test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from archiver.ledger import tiles
from archiver.ledger.log import LogState, Pending, TransparencyLog
from archiver.store.local import LocalObjectStore
from archiver.store.port import LockMode, ObjectStore, Retention, StateStore
from archiver.store.state_sqlite import SqliteStateStore

ORIGIN = "archive.test/ledger"


def retention() -> Retention:
    return Retention(LockMode.GOVERNANCE, datetime.now(UTC) + timedelta(days=1))


def open_stores(cfg: dict[str, Any]) -> tuple[ObjectStore, StateStore]:
    if cfg["kind"] == "local":
        return LocalObjectStore(Path(cfg["root"])), SqliteStateStore(Path(cfg["db"]))
    from archiver.store._s3common import make_client
    from archiver.store.s3 import S3ObjectStore
    from archiver.store.state_s3 import S3StateStore

    client = make_client(cfg["endpoint"], cfg["access_key"], cfg["secret_key"], secure=False)
    return S3ObjectStore(client, cfg["bucket"]), S3StateStore(client, cfg["state_bucket"])


def dead_claim(log: TransparencyLog, entries: list[bytes], batch: str = "dead") -> LogState:
    """Stage and claim ``entries`` as an appender that then died (before writing any tile).
    Returns the committed state the claim was made on."""
    st, token = log._load()
    staging = f"{log.prefix}staging/{batch}"
    log.state.put(staging, tiles.encode_bundle(entries), if_absent=True)
    claim = LogState(
        st.origin, st.size, st.root, st.compact, Pending(batch, st.size, len(entries), staging)
    )
    log.state.put(log.state_key, claim.to_json(), if_match=token)
    return st


def open_log(cfg: dict[str, Any], **kw: Any) -> TransparencyLog:
    objects, state = open_stores(cfg)
    return TransparencyLog(
        objects, state, ORIGIN, retention, prefix=cfg.get("prefix", "log/"), **kw
    )
