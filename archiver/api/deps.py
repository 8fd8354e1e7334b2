"""FastAPI dependencies: the runtime and the authenticated principal.

Every ``/v1`` route declares ``Depends(allow(...roles))``; a test walks the app's
routes and proves each one refuses missing, expired, revoked and wrong-role tokens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from archiver.auth import Principal, Role, require_role
from archiver.errors import AuthError, Forbidden
from archiver.security_events import SecurityEvent

if TYPE_CHECKING:
    from archiver.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'", code="token_malformed")
    return value.strip()


def allow(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency factory: authenticate, then check the role is one of ``roles``."""
    allowed = frozenset(roles)

    async def dependency(request: Request) -> Principal:
        # Async, so a request does not pay a thread hop for its token: a verified token is
        # cached in memory; only a cache miss reads the state store, on a worker thread.
        runtime = get_runtime(request)
        try:
            token = _bearer(request)
            if runtime.tokens.is_cached(token):
                principal = runtime.tokens.authenticate(token)
            else:
                principal = await run_in_threadpool(runtime.tokens.authenticate, token)
        except AuthError as exc:
            # A failed sign-in is a security event (counted per source and minute; the
            # token presented is never kept), so the report's Access section can count it.
            runtime.security.record(SecurityEvent.SIGN_IN_FAILED, request, reason=exc.code)
            raise
        try:
            require_role(principal, allowed)
        except Forbidden as exc:
            runtime.security.record(SecurityEvent.REQUEST_REFUSED, request, reason=exc.code)
            raise
        # Every authenticated request may owe an audit event: refuse it (503) before it
        # does anything when the audit queue cannot promise one.
        runtime.audit.admit()
        request.state.principal = principal
        return principal

    dependency.allowed_roles = allowed  # type: ignore[attr-defined]  # read by the route-walk test
    return dependency


def roles_of(dependency: object) -> Iterable[Role]:
    return getattr(dependency, "allowed_roles", ())
