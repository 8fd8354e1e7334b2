"""The case service of one runtime, built once and kept in ``runtime.extras`` (as
``archiver.retention.services`` does, so ``archiver/runtime.py`` needs no new field)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from archiver.cases.service import CaseService
from archiver.retention.services import retention_services

if TYPE_CHECKING:
    from archiver.runtime import Runtime


def case_service(runtime: Runtime) -> CaseService:
    cached = runtime.extras.get("cases")
    if isinstance(cached, CaseService):
        return cached
    service = CaseService(state=runtime.state, index=runtime.index,
                          holds=retention_services(runtime).holds, audit=runtime.audit)
    runtime.extras["cases"] = service
    return service
