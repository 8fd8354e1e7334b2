"""The proof API (any authenticated role): checkpoint, verifier key, proofs.

Scoped like search: a number-scoped token gets the proof of a record of its own numbers
only, and the inclusion proof of a leaf only when that leaf is such a record; anything
else is 404, as if it did not exist. The checkpoint, the key and consistency proofs
carry only hashes and sizes and are for every token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from archiver.api.deps import allow, get_runtime
from archiver.auth import ALL_ROLES, Principal

router = APIRouter(prefix="/v1", tags=["proofs"])
ANY_ROLE = allow(*ALL_ROLES)


@router.get("/log/checkpoint", response_class=PlainTextResponse)
async def checkpoint(request: Request, _: Principal = Depends(ANY_ROLE)) -> PlainTextResponse:
    """The latest signed checkpoint: a C2SP tlog-checkpoint as a C2SP signed note."""
    note = await run_in_threadpool(get_runtime(request).proofs.checkpoint)
    return PlainTextResponse(note)


@router.get("/log/public-key", response_class=PlainTextResponse)
async def public_key(request: Request, _: Principal = Depends(ANY_ROLE)) -> PlainTextResponse:
    """The C2SP verifier key (``name+keyid+base64``) that signs checkpoints now."""
    return PlainTextResponse(get_runtime(request).proofs.public_key() + "\n")


@router.get("/log/proofs/inclusion")
async def inclusion(
    request: Request,
    leaf_index: int = Query(ge=0),
    tree_size: int | None = Query(default=None, ge=1),
    principal: Principal = Depends(ANY_ROLE),
) -> dict[str, Any]:
    """RFC 6962 §2.1.1 audit path (base64 hashes); tree_size defaults to the checkpoint's."""
    return await run_in_threadpool(
        get_runtime(request).proofs.scoped_inclusion, leaf_index, tree_size, principal.numbers
    )


@router.get("/log/proofs/consistency")
async def consistency(
    request: Request,
    first: int = Query(alias="from", ge=1),
    second: int = Query(alias="to", ge=1),
    _: Principal = Depends(ANY_ROLE),
) -> dict[str, Any]:
    """RFC 6962 §2.1.2 consistency proof between two tree sizes."""
    return await run_in_threadpool(get_runtime(request).proofs.consistency, first, second)


@router.get("/records/{record_id}/proof")
async def record_proof(
    request: Request, record_id: str, principal: Principal = Depends(ANY_ROLE)
) -> dict[str, Any]:
    """A record's leaf (entry bytes), its index and inclusion proof, and the checkpoint."""
    return await run_in_threadpool(
        get_runtime(request).proofs.record_proof, record_id, principal.numbers
    )
