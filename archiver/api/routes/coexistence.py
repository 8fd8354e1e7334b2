"""``GET /v1/coexistence/{phone_number_id}`` (admin, compliance_officer): sync requests,
history progress, orphan statuses and silence for one business number."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from archiver.api.deps import allow, get_runtime
from archiver.auth import Principal, Role
from archiver.errors import Forbidden

router = APIRouter(prefix="/v1", tags=["coexistence"])


@router.get("/coexistence/{phone_number_id}")
async def coexistence_report(
    request: Request,
    principal: Annotated[Principal, Depends(allow(Role.ADMIN, Role.COMPLIANCE_OFFICER))],
    phone_number_id: Annotated[str, Path(pattern=r"^[0-9]{1,32}$")],
    orphan_hours: Annotated[float, Query(gt=0, le=24 * 365)] = 24.0,
) -> dict[str, Any]:
    if not principal.sees_number(phone_number_id):
        raise Forbidden("this token may not read that number")
    service = get_runtime(request).coexistence()
    return await asyncio.to_thread(service.report, phone_number_id, orphan_hours=orphan_hours)
