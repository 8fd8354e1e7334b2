"""Who am I: the token's own identity (any role). Handy for clients and for the auth tests."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from archiver.api.deps import allow
from archiver.auth import ALL_ROLES, Principal

router = APIRouter(prefix="/v1", tags=["auth"])


@router.get("/whoami")
def whoami(principal: Principal = Depends(allow(*ALL_ROLES))) -> dict[str, Any]:
    return {
        "token_id": principal.token_id,
        "name": principal.name,
        "role": principal.role.value,
        "numbers": list(principal.numbers) if principal.numbers is not None else None,
        "expires_at": principal.expires_at.isoformat() if principal.expires_at else None,
    }
