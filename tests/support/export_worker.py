"""An export-job runner process for crash tests (tests/integration/cases).

Usage: python -m tests.support.export_worker [slow]
Backends come from the ``ARCHIVER_*`` environment (``settings_env``). It runs queued
``export`` jobs until none is left. With ``slow``, each record written prints ``item N``
and pauses, so the test can SIGKILL the process in the middle of a package.
"""

from __future__ import annotations

import sys
import time

from archiver.export import writer
from archiver.export.model import ExportItem
from archiver.jobs.durable import JobService
from archiver.runtime import Runtime
from archiver.settings import load_settings


def main() -> int:
    settings = load_settings()
    runtime = Runtime.open(settings, create=False)
    if sys.argv[1:] == ["slow"]:
        add = writer.PackageWriter.add
        written = [0]

        def slow_add(self: writer.PackageWriter, item: ExportItem) -> None:
            add(self, item)
            written[0] += 1
            sys.stdout.write(f"item {written[0]}\n")
            sys.stdout.flush()
            time.sleep(0.3)

        writer.PackageWriter.add = slow_add  # type: ignore[method-assign]
    service = JobService.from_settings(settings, runtime.state)
    service.poll_interval = 0.1
    runtime.register_export(service)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    service.run_until_idle(timeout=300)
    runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
