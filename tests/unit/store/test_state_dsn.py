"""Production mode and ``ARCHIVER_STATE_DSN``: PostgreSQL off loopback only over verified
TLS, like S3 (``archiver.settings._check_state_dsn``)."""

from __future__ import annotations

import pytest

from archiver.errors import ConfigError
from archiver.settings import _check_state_dsn


@pytest.mark.parametrize("dsn", [
    "postgresql://a:b@127.0.0.1:5432/x",
    "postgresql://a:b@localhost/x",
    "dbname=x",  # a Unix socket on this machine
    "host=/run/postgresql dbname=x",
    "postgresql://a:b@db.internal/x?sslmode=verify-full",
    "host=db.internal sslmode=verify-ca dbname=x",
])  # fmt: skip
def test_accepted(dsn: str) -> None:
    _check_state_dsn(dsn)


@pytest.mark.parametrize("dsn", [
    "postgresql://a:b@db.internal/x",
    "postgresql://a:b@db.internal/x?sslmode=require",  # encrypted, but to anyone
    "host=127.0.0.1,db.internal sslmode=prefer dbname=x",
])  # fmt: skip
def test_remote_without_verified_tls_is_refused(dsn: str) -> None:
    with pytest.raises(ConfigError, match="verify-full"):
        _check_state_dsn(dsn)


def test_unparseable_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a PostgreSQL connection string"):
        _check_state_dsn("nonsense ===")
