"""``es_url`` for the search integration tests.

Same semantics as the shared helper the lead is adding to ``tests/conftest.py``: the URL
comes from ``ARCHIVER_TEST_ES_URL`` (printed by ``scripts/services env``); when it is
missing the test fails under ``CI=true`` and is skipped otherwise.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def es_url() -> str:
    url = os.environ.get("ARCHIVER_TEST_ES_URL")
    if not url:
        message = "ARCHIVER_TEST_ES_URL is not set (run: eval $(scripts/services env))"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url
