"""Meta's webhook endpoint: the verification handshake and signed deliveries.

POST order matters: the signature over the raw bytes is checked first, before the
content type or the body is looked at. A correctly signed body is captured byte for
byte and answered 200 whatever it contains; parsing happens later, off the request.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from archiver.api.deps import get_runtime
from archiver.api.errors import code_response
from archiver.ingest.rawbatch import Delivery
from archiver.logs import get_logger
from archiver.security_events import SecurityEvent
from archiver.store.errors import StoreError
from archiver.whatsapp.signature import SignatureError, verify_signature

router = APIRouter(tags=["webhook"])
log = get_logger("archiver.webhook")


@router.get("/webhooks/whatsapp", response_class=PlainTextResponse)
async def verify_handshake(
    request: Request,
    mode: str | None = Query(default=None, alias="hub.mode"),
    token: str | None = Query(default=None, alias="hub.verify_token"),
    challenge: str | None = Query(default=None, alias="hub.challenge"),
) -> Response:
    runtime = get_runtime(request)
    expected = runtime.settings.verify_token.get_secret_value().encode()
    given = (token or "").encode()
    if mode != "subscribe" or challenge is None or not expected:
        return code_response("handshake_invalid", "hub.mode must be subscribe with a challenge")
    if not hmac.compare_digest(given, expected):
        runtime.security.record(SecurityEvent.HANDSHAKE_REFUSED, request)
        return code_response("verify_token_mismatch", "hub.verify_token does not match")
    return PlainTextResponse(challenge)


async def receive_delivery(request: Request) -> Response:
    """POST: a signed delivery. Mounted as a plain Starlette route (``app.add_route``): the
    hot path skips FastAPI's parameter machinery, which it does not need (see docs/api.md)."""
    runtime = get_runtime(request)
    body = await request.body()
    header = request.headers.get("x-hub-signature-256")
    try:
        secret_index = verify_signature(body, header, runtime.settings.app_secret_list())
    except SignatureError as exc:
        runtime.security.record(
            SecurityEvent.SIGNATURE_REFUSED, request, reason=exc.reason, size=len(body)
        )
        return code_response(
            f"signature_{exc.reason}",
            f"X-Hub-Signature-256 {exc.reason}",
            {"reason": exc.reason},
        )
    delivery = Delivery(
        body=body,
        received_at=datetime.now(UTC).isoformat(),
        signature_header=header or "",
        secret_index=secret_index,
        content_type=request.headers.get("content-type"),
    )
    try:
        receipt = await runtime.capture.capture(delivery)
    except StoreError as exc:
        log.warning("capture_failed", error_code=exc.code)
        return code_response(
            "store_unavailable",
            "the evidence store cannot take the delivery now; retry",
            {"backend": "object_store"},
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"captured": True, "batch": receipt.batch.batch_id, "slot": receipt.index})
