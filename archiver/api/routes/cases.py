"""E-discovery cases (``/v1/cases``). Thin: parse, call ``archiver.cases``, answer.

Roles: admin and legal create, change, hold, close and reopen; compliance officers read;
auditors and service tokens are refused. Number scope is enforced by the service: a
number-scoped token sees only cases within its numbers (another's answers 404, as a
missing one) and cannot name numbers outside them (403 ``case_number_forbidden``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

from archiver.api.deps import allow, get_runtime
from archiver.api.routes.search import actor_of
from archiver.auth import Principal, Role
from archiver.cases.model import MAX_CONTACTS, MAX_NUMBERS, Custodians, Scope
from archiver.cases.service import CaseInput, CaseService
from archiver.errors import ArchiverError

MAX_CASE_BODY = 64 * 1024  # a case is a few fields; anything bigger is a mistake


class CaseBodyTooLarge(ArchiverError):
    code = "payload_too_large"


def _too_large() -> CaseBodyTooLarge:
    return CaseBodyTooLarge(f"a case request is at most {MAX_CASE_BODY} bytes",
                            details={"max_bytes": MAX_CASE_BODY})  # fmt: skip


async def read_capped(request: Request, limit: int = MAX_CASE_BODY) -> bytes:
    """The body, read chunk by chunk and refused once past ``limit``: a chunked body has
    no Content-Length to check first. Cached on the request, where the body parser reads
    it."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large()
    request._body = bytes(body)  # Starlette's cache: ``request.body()`` returns it
    return request._body


class _DuplicateKey(Exception):
    pass


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def refuse_duplicate_keys(body: bytes) -> None:
    """422 for a JSON body that repeats a key. JSON parsers disagree on which copy wins
    (we take the last): ``{"release_holds": false, "release_holds": true}`` would read as
    "keep the holds" to a proxy or form that checks the first and release them here. A
    body that is not JSON is left to the framework's parser (its own 422)."""
    if not body:
        return
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as dup:
        raise RequestValidationError([{"loc": ("body", str(dup)), "type": "json_duplicate_key",
                                       "msg": f"the key {str(dup)!r} appears twice"}]) from None
    except (ValueError, RecursionError):
        return


class CappedBodyRoute(APIRoute):
    """A route whose request body is read with :func:`read_capped` before parsing, and
    refused when it repeats a JSON key (:func:`refuse_duplicate_keys`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def capped(request: Request) -> Response:
            if request.method in ("POST", "PUT", "PATCH"):
                refuse_duplicate_keys(await read_capped(request))
            return await handler(request)

        return capped


router = APIRouter(prefix="/v1", tags=["cases"], route_class=CappedBodyRoute)


_WRITERS = (Role.ADMIN, Role.LEGAL)
_READERS = (Role.ADMIN, Role.LEGAL, Role.COMPLIANCE_OFFICER)
Writer = Annotated[Principal, Depends(allow(*_WRITERS))]
Reader = Annotated[Principal, Depends(allow(*_READERS))]

Number = Annotated[str, Field(max_length=32)]
Contact = Annotated[str, Field(max_length=128)]


def _time_as_text(value: object) -> object:
    """A time must come as ISO 8601 text: pydantic would read a bare number as a Unix time,
    and a case's scope is evidence of what was asked for."""
    if value is not None and not isinstance(value, str):
        raise ValueError("a time as ISO 8601 text")
    return value


CaseTime = Annotated[datetime, BeforeValidator(_time_as_text)]


class CustodiansBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    numbers: list[Number] = Field(default_factory=list, max_length=MAX_NUMBERS,
                                  description="business numbers (phone_number_id)")
    contacts: list[Contact] = Field(default_factory=list, max_length=MAX_CONTACTS,
                                    description="contacts: wa_id or BSUID")


class ScopeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(default="", max_length=4000, description="docs/search.md syntax")
    date_from: CaseTime | None = Field(default=None, description="inclusive; naive = UTC")
    date_to: CaseTime | None = Field(default=None, description="exclusive; naive = UTC")
    numbers: list[Number] | None = Field(default=None, max_length=MAX_NUMBERS,
                                         description="phone_number_ids; omitted = custodian "
                                         "numbers, else the token's numbers")

    def scope(self) -> Scope:
        return Scope(self.query, self.date_from, self.date_to,
                     None if self.numbers is None else tuple(self.numbers))


class CaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=200)
    matter_number: str = Field(max_length=100)
    description: str | None = Field(default=None, max_length=4000)
    custodians: CustodiansBody = Field(default_factory=CustodiansBody)
    scope: ScopeBody = Field(default_factory=ScopeBody)


class CaseUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    matter_number: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=4000)
    custodians: CustodiansBody | None = None
    scope: ScopeBody | None = None


class HoldBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000)


class CloseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release_holds: StrictBool = Field(default=False, description="release this case's holds too; "
                                "never done unless asked")
    reason: str | None = Field(default=None, max_length=2000)


def _custodians(body: CustodiansBody | None) -> Custodians | None:
    return None if body is None else Custodians(tuple(body.numbers), tuple(body.contacts))


def _service(request: Request) -> CaseService:
    return get_runtime(request).cases


def _view(service: CaseService, doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "holds": service.holds_of(doc)}


@router.post("/cases", status_code=201)
def create_case(body: CaseCreate, request: Request, principal: Writer) -> dict[str, Any]:
    service = _service(request)
    doc = service.create(CaseInput(body.name, body.matter_number, body.description,
                                   _custodians(body.custodians), body.scope.scope()),
                         actor_of(principal))  # fmt: skip
    return _view(service, doc)


@router.get("/cases")
def list_cases(request: Request, principal: Reader) -> dict[str, Any]:
    service = _service(request)
    return {"cases": service.all(actor_of(principal))}


@router.get("/cases/{case_id}")
def get_case(case_id: str, request: Request, principal: Reader) -> dict[str, Any]:
    service = _service(request)
    return _view(service, service.get(case_id, actor_of(principal)))


def _update(case_id: str, body: CaseUpdate, request: Request, principal: Principal,
            ) -> dict[str, Any]:  # fmt: skip
    service = _service(request)
    data = CaseInput(body.name, body.matter_number, body.description,
                     _custodians(body.custodians),
                     None if body.scope is None else body.scope.scope())  # fmt: skip
    return _view(service, service.update(case_id, data, actor_of(principal)))


@router.patch("/cases/{case_id}")
def patch_case(case_id: str, body: CaseUpdate, request: Request,
               principal: Writer) -> dict[str, Any]:  # fmt: skip
    return _update(case_id, body, request, principal)


@router.put("/cases/{case_id}/scope")
def put_scope(case_id: str, body: ScopeBody, request: Request,
              principal: Writer) -> dict[str, Any]:  # fmt: skip
    """Replace the scope whole (fields left out are cleared)."""
    return _update(case_id, CaseUpdate(scope=body), request, principal)


@router.post("/cases/{case_id}/holds", status_code=201)
def hold_case(case_id: str, request: Request, principal: Writer,
              body: HoldBody | None = None) -> dict[str, Any]:  # fmt: skip
    service = _service(request)
    return service.hold_scope(case_id, actor_of(principal),
                              reason=None if body is None else body.reason)  # fmt: skip


@router.post("/cases/{case_id}/close")
def close_case(case_id: str, request: Request, principal: Writer,
               body: CloseBody | None = None) -> dict[str, Any]:  # fmt: skip
    service = _service(request)
    body = body or CloseBody()
    doc = service.close(case_id, actor_of(principal), release_holds=body.release_holds,
                        reason=body.reason)  # fmt: skip
    return _view(service, doc)


@router.post("/cases/{case_id}/holds/{hold_id}/release")
def release_case_hold(case_id: str, hold_id: str, request: Request, principal: Writer,
                      body: HoldBody | None = None) -> dict[str, Any]:  # fmt: skip
    """Release one of the case's holds, with a chain-of-custody entry (the plain
    ``DELETE /v1/holds/{id}`` refuses a case's hold: 409 ``hold_owned_by_case``)."""
    service = _service(request)
    return service.release_hold(case_id, hold_id, actor_of(principal),
                                reason=None if body is None else body.reason)  # fmt: skip


@router.post("/cases/{case_id}/reopen")
def reopen_case(case_id: str, request: Request, principal: Writer) -> dict[str, Any]:
    service = _service(request)
    return _view(service, service.reopen(case_id, actor_of(principal)))


@router.get("/cases/{case_id}/custody")
def case_custody(case_id: str, request: Request, principal: Reader) -> dict[str, Any]:
    service = _service(request)
    return {"case_id": case_id, "entries": service.custody(case_id, actor_of(principal))}
