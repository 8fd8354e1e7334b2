"""Worker process for the concurrency test: append ``count`` entries in random batches
and record each acknowledged entry (id and index) only after ``append`` returned.

Usage: python appender.py CONFIG_JSON NAME COUNT ACK_FILE
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backends import open_log


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    name, count, ack_path = sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    log = open_log(cfg, stale_after=float(cfg.get("stale_after", 1.0)))
    rng = random.Random()
    done = 0
    with ack_path.open("a") as ack:
        while done < count:
            k = min(count - done, rng.randint(1, int(cfg.get("max_batch", 50))))
            ids = [f"{name}-{done + j}" for j in range(k)]
            entries = [
                json.dumps({"id": i, "pad": "x" * rng.randint(0, 100)}).encode() for i in ids
            ]
            indices = log.append(entries)
            ack.write("".join(f"{i} {x}\n" for i, x in zip(ids, indices, strict=True)))
            ack.flush()
            os.fsync(ack.fileno())
            done += k


if __name__ == "__main__":
    main()
