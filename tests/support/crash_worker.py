"""A processing worker that SIGKILLs itself at random named points (crash-safety tests).

Usage: python -m tests.support.crash_worker DATA_DIR SEED PROBABILITY
Exit 0 when nothing is left to process; death by SIGKILL otherwise. The backends come
from the ``ARCHIVER_*`` environment (``settings_env``): the embedded store by default,
real MinIO when ``ARCHIVER_STORE=s3``.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from pathlib import Path

from archiver.runtime import Runtime
from tests.support.apps import embedded_settings


def main() -> int:
    data_dir, seed, probability = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    rng = random.Random(seed)
    runtime = Runtime.open(embedded_settings(data_dir, inline_workers=False))

    def crash(point: str) -> None:
        if rng.random() < probability:
            sys.stdout.write(f"kill at {point}\n")
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    runtime.processor._crash = crash
    sys.stdout.write("ready\n")  # the test starts its kill timer now
    sys.stdout.flush()
    # A new owner each start, and claims of a killed owner must not block us for minutes.
    import archiver.ingest.processor as processor_module

    processor_module.CLAIM_SECONDS = 0.5
    outcomes = runtime.processor.sweep()
    pending = runtime.processor.pending_batches()
    sys.stdout.write(f"done {len(outcomes)} pending {len(pending)}\n")
    return 0 if not pending else 3


if __name__ == "__main__":
    sys.exit(main())
