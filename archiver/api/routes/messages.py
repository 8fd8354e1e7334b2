"""The send proxy: ``POST /v1/messages`` archives a send, forwards it, archives the answer.

Order (docs/send-proxy.md): (1) the request is captured raw (``proxy:request``) —
store down → 503 and nothing is sent; (2) it is forwarded to the Cloud API
(``POST {ARCHIVER_GRAPH_BASE_URL}/{version}/{phone_number_id}/messages``); (3) Meta's
answer is captured (``proxy:response``) before the caller hears it, so the
``api_send`` record (id ``record_id(phone_number_id, "msg:" + wamid)``) exists for the
statuses that follow. Meta's status code and JSON body are returned verbatim.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import rfc8785
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from archiver.api.deps import allow, get_runtime
from archiver.api.errors import BadRequest, code_response
from archiver.api.routes.search import actor_of
from archiver.audit import AuditAction, AuditUnavailable
from archiver.auth import Principal, Role
from archiver.errors import Forbidden, Unavailable
from archiver.ingest.outbound import PROXY_REQUEST, PROXY_RESPONSE, send_media_id_problem
from archiver.ingest.rawbatch import Delivery
from archiver.logs import get_logger
from archiver.store.errors import StoreError
from archiver.whatsapp.graph import GraphError, SendResult
from archiver.whatsapp.media import MEDIA_ID_INVALID

router = APIRouter(prefix="/v1", tags=["messages"])
log = get_logger("archiver.send_proxy")


class SendRequest(BaseModel):
    """The Cloud API send body, wrapped with the sending number."""

    model_config = ConfigDict(extra="forbid")

    phone_number_id: str = Field(pattern=r"^[0-9]{1,32}$")
    payload: dict[str, Any] = Field(description="Cloud API 'Messages' send body, as is")


def _delivery(doc: dict[str, Any], header: str) -> Delivery:
    return Delivery(
        body=rfc8785.dumps(doc),
        received_at=datetime.now(UTC).isoformat(),
        signature_header=header,
        secret_index=-1,
        content_type="application/json",
    )


def _store_down(exc: StoreError) -> JSONResponse:
    log.warning("send_proxy_store_down", error_code=exc.code)
    return code_response(
        "store_unavailable",
        "the evidence store cannot archive the send now; nothing was sent, retry",
        {"backend": "object_store", "sent": False},
        headers={"Retry-After": "5"},
    )


@router.post("/messages", response_model=None)
async def send_message(
    body: SendRequest,
    request: Request,
    principal: Annotated[Principal, Depends(allow(Role.SERVICE))],
) -> Response:
    runtime = get_runtime(request)
    if not principal.sees_number(body.phone_number_id):
        raise Forbidden("this token may not send from that number")
    problem = send_media_id_problem(body.payload)
    if problem is not None:  # refused before anything is archived, sent or queued
        raise BadRequest(problem, code=MEDIA_ID_INVALID)
    graph = runtime.graph
    if graph is None:
        raise Unavailable(
            "no Graph API token configured (ARCHIVER_GRAPH_TOKEN)", code="graph_not_configured"
        )
    payload_bytes = rfc8785.dumps(body.payload)
    proxy_id = uuid.uuid4().hex
    base = {
        "v": 1,
        "proxy_id": proxy_id,
        "phone_number_id": body.phone_number_id,
        "payload": body.payload,
        "payload_sha256": hashlib.sha256(payload_bytes).hexdigest(),
        "actor": {"token_id": principal.token_id, "name": principal.name},
    }
    requested = _delivery({**base, "kind": "request"}, PROXY_REQUEST)
    try:
        await runtime.capture.capture(requested)
    except StoreError as exc:
        return _store_down(exc)
    try:
        result: SendResult | None = await asyncio.to_thread(
            graph.send_message, body.phone_number_id, payload_bytes
        )
        failure: GraphError | None = None
    except GraphError as exc:  # Meta unreachable or unreadable: archive that too
        result, failure = None, exc
    response_doc: dict[str, Any] = {
        **base,
        "kind": "response",
        "request_sha256": hashlib.sha256(requested.body).hexdigest(),
        "response": (
            {"status": result.status_code, "body": result.body}
            if result is not None
            else {"status": None, "body": {}, "failure": failure.code if failure else None}
        ),
    }
    try:
        await runtime.capture.capture(_delivery(response_doc, PROXY_RESPONSE))
    except StoreError as exc:
        # Sent, but its answer is not archived: say so, and never invite a resend.
        log.error("send_proxy_response_not_archived", error_code=exc.code, proxy_id=proxy_id)
        return code_response(
            "sent_not_archived",
            "the message was handed to WhatsApp but its answer could not be archived; "
            "do not resend",
            {"sent": True, "wamids": result.wamids if result else [], "proxy_id": proxy_id},
        )
    try:
        runtime.audit.record(
            AuditAction.MESSAGE_SENT,
            actor_of(principal),
            concerns=[body.phone_number_id],
            proxy_id=proxy_id,
            phone_number_id=body.phone_number_id,
            wamids=result.wamids if result else [],
            status=result.status_code if result else None,
        )
    except AuditUnavailable:
        # Already sent, and request and answer are in the evidence store: a 503 now would
        # invite a resend (a second message). The route was admitted with room to spare,
        # so this is a burst at the very edge; say so loudly.
        log.error("send_proxy_audit_unavailable", proxy_id=proxy_id)
    if failure is not None:
        raise failure
    assert result is not None
    return JSONResponse(
        result.body, status_code=result.status_code, headers={"X-Archive-Proxy-Id": proxy_id}
    )
