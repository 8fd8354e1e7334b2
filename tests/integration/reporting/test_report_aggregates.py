"""On Elasticsearch the gatherer takes the records' numbers from aggregations and draws
the lock sample leaf by leaf; one streamed pass over every document (the embedded path)
must give the same report, the same sample and the same findings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archiver.reporting.gather import ReportGatherer, ReportRequest
from reports.compute import compute_report
from reports.facts import Regulation
from reports.twin import twin_bytes
from tests.integration.reporting.support import EXPECTED_CODES, PN, SILENT, seeded_archive


class _PortOnly:
    """The index through the port alone (no aggregation methods): the streamed path."""

    def __init__(self, index: Any) -> None:
        self._index = index

    def search(self, request: Any) -> Any:
        return self._index.search(request)

    def count(self, request: Any) -> int:
        return int(self._index.count(request))

    def scan(self, request: Any, fields: Any) -> Any:
        return self._index.scan(request, fields)


def test_aggregated_and_streamed_gathers_give_the_same_report(request: Any,
                                                                tmp_path: Path) -> None:
    with seeded_archive(request, tmp_path, "servers") as s:
        s.run_report()  # signs a checkpoint covering the seeded archive
        g = s.runtime.reports.gatherer
        assert callable(getattr(g.index, "report_counts", None))
        streamed = ReportGatherer(config=g.config, objects=g.objects, state=g.state,
                                  index=_PortOnly(g.index),  # type: ignore[arg-type]
                                  log=g.log, checkpoints=g.checkpoints,
                                  policy_set=g.policy_set, clock=g.clock)
        g.checkpoints.sign_if_grown()
        size = g.checkpoints.latest_signed().checkpoint.size
        base = ReportRequest(Regulation.FINRA, s.start, s.end, (PN, SILENT), tree_size=size)
        for sample in (None, 2, 3):
            req = ReportRequest(base.regulation, base.start, base.end, base.numbers,
                                sample_size=sample, seed="same-seed", tree_size=size)
            a, b = g.gather(req), streamed.gather(req)
            assert a.summary is not None and b.summary is not None
            assert a.summary.counts == b.summary.counts and a.summary.counts
            assert a.lock_check == b.lock_check
            ra, rb = compute_report(a), compute_report(b)
            assert {f.code.value for f in ra.findings} == EXPECTED_CODES
            assert twin_bytes(ra) == twin_bytes(rb)
