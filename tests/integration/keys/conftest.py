"""``s3_endpoint`` for the key-store integration tests.

Same semantics as the shared helper the lead is adding to ``tests/conftest.py``: the
endpoint and credentials come from ``ARCHIVER_TEST_S3_*`` (printed by ``scripts/services
env``); when missing, the test fails under ``CI=true`` and is skipped otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class S3Endpoint:
    endpoint: str
    access_key: str
    secret_key: str


@pytest.fixture(scope="session")
def s3_endpoint() -> S3Endpoint:
    names = ("ARCHIVER_TEST_S3_ENDPOINT", "ARCHIVER_TEST_S3_ACCESS_KEY",
             "ARCHIVER_TEST_S3_SECRET_KEY")
    values = [os.environ.get(n) for n in names]
    if not all(values):
        message = f"{' / '.join(names)} not set (run: eval $(scripts/services env))"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    endpoint, access, secret = (v or "" for v in values)
    return S3Endpoint(endpoint, access, secret)
