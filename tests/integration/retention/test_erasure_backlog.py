"""An erasure requested while processing lags behind a captured delivery of the person
must not leave that delivery readable (attack-4b). The erasure decided on the records and
slots processed so far and said ``done``; the backlog delivery (sent before the request)
was then processed under a fresh key: its text readable, searchable, its raw slot keyed.
Now the erasure waits a moment for every batch captured before the request, and answers
``erasure_pending`` (nothing destroyed) if one is still not processed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.erasure import (
    BACKENDS,
    ERASE,
    archive,
    first_then_captured,
    recoverable,
    try_erase,
)
from tests.support.retention import Msg, now


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_erasure_waits_for_deliveries_captured_before_it(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    with archive(request, tmp_path, backend) as (client, rt):
        first_then_captured(client, rt, [Msg(ERASE, "backlog zqxbacklog", now())])
        rt.retention.erasure.backlog_wait_s = 0.2  # nobody processes here: do not wait long

        status, code, text = try_erase(client, rt)  # the delivery is captured, not processed
        assert (status, code) == (409, "erasure_pending"), text
        assert any(w.startswith("content of") for w in recoverable(rt, "zqxplanned"))

        assert rt.processor.sweep()
        rt.follower.run_to_end()
        status, _code, text = try_erase(client, rt)
        assert status == 200, text
        assert recoverable(rt, "zqxbacklog") == [] and recoverable(rt, "zqxplanned") == []
