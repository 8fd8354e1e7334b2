"""Build the working area from settings (the composition root calls this)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from archiver.jobs.workarea import LocalWorkArea, S3WorkArea, WorkArea

if TYPE_CHECKING:
    from archiver.settings import Settings


def open_workarea(settings: Settings) -> WorkArea:
    """``<data_dir>/workarea`` on the embedded default, the ``ARCHIVER_WORKAREA_BUCKET``
    bucket on S3 (never the evidence bucket). Call ``ensure()`` before use."""
    from archiver.settings import StoreKind

    if settings.store is StoreKind.LOCAL:
        return LocalWorkArea(settings.data_dir / "workarea")
    from archiver.store._s3common import make_client

    client = make_client(
        settings.s3_endpoint,
        settings.s3_access_key.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
        secure=settings.s3_secure,
        region=settings.s3_region,
    )
    return S3WorkArea(client, settings.workarea_bucket, evidence_bucket=settings.evidence_bucket,
                      state_bucket=settings.state_bucket,
                      backstop_days=math.ceil(settings.workarea_expiry_days) + 1)
