"""Graph API client for the WhatsApp Cloud API: media, the send proxy, Coexistence onboarding.

An I/O adapter over an injected ``httpx.Client`` (sync); every httpx exception and
every Meta error answer is turned into one of the errors below (``graph_errors``)
before it leaves this module::

    GraphError                  (archiver.errors.ArchiverError) anything else Meta refused
    ├── GraphUnavailable        network failure, timeout, 5xx, 429, Meta "transient" codes: retry
    ├── GraphAuthError          401/403, or Meta code 190 (token), 10 / 200-299 (permission)
    ├── GraphNotFound           404, or Graph code 100 / subcode 33 ("object does not exist")
    │   └── MediaExpired        not found and past the 7-day media life (media.MEDIA_LIFETIME)
    ├── GraphRequestError       any other 4xx with a Meta error body (``meta_error`` holds it)
    ├── GraphBadResponse        an answer we cannot read (not JSON, fields missing or malformed)
    ├── MediaHashMismatch       downloaded bytes do not hash to Meta's ``sha256``
    └── MediaTooLarge           ``file_size`` or the streamed body exceeds ``max_bytes``

Meta references (see /shared/fixtures/whatsapp/README.md §3, §4):

* Media: ``GET /<VERSION>/<MEDIA_ID>[?phone_number_id=]`` → ``{url, mime_type, sha256,
  file_size, id}``; ``GET <url>`` with the same ``Authorization: Bearer``; a 404 there
  means the 5-minute URL expired → fetch a fresh URL once.
* Send: ``POST /<VERSION>/<PHONE_NUMBER_ID>/messages`` → ``{messaging_product,
  contacts[{input, wa_id?, user_id?}], messages[{id}]}`` or ``{"error": {message, type,
  code, error_subcode?, error_data?, fbtrace_id}}`` (Cloud API "Error codes").
* Coexistence: ``POST /<PHONE_NUMBER_ID>/smb_app_data`` (once per ``sync_type``) and
  ``GET /<PHONE_NUMBER_ID>?fields=is_on_biz_app,platform_type``.

Retries: idempotent GETs go through ``RetryPolicy`` (tenacity, exponential back-off
with jitter, only for ``GraphUnavailable``). POSTs are never retried here: a resent
message is a second message, and ``smb_app_data`` may be called only once.

Module map: ``graph_errors`` (the error tree and the pure status/body → error
mapping), ``graph_results`` (return types and answer readers), ``graph_retry``
(``RetryPolicy``); this module is the client itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal
from urllib.parse import quote, urlsplit

import httpx

from archiver.whatsapp.graph_errors import (
    GraphAuthError,
    GraphBadResponse,
    GraphError,
    GraphNotFound,
    GraphRequestError,
    GraphUnavailable,
    MediaExpired,
    MediaHashMismatch,
    MediaTooLarge,
    error_for,
    meta_error_of,
)
from archiver.whatsapp.graph_results import (
    MediaBlob,
    MediaInfo,
    PhoneNumberPlatform,
    SendResult,
    parse_media_info,
    parse_send_body,
)
from archiver.whatsapp.graph_retry import NO_RETRY, RetryPolicy
from archiver.whatsapp.media import DEFAULT_MAX_MEDIA_BYTES, media_deadline, normalise_sha256

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_VERSION",
    "NO_RETRY",
    "GraphAuthError",
    "GraphBadResponse",
    "GraphClient",
    "GraphError",
    "GraphNotFound",
    "GraphRequestError",
    "GraphUnavailable",
    "MediaBlob",
    "MediaExpired",
    "MediaHashMismatch",
    "MediaInfo",
    "MediaTooLarge",
    "PhoneNumberPlatform",
    "RetryPolicy",
    "SendResult",
    "SyncType",
    "error_for",
    "meta_error_of",
    "parse_media_info",
    "parse_send_body",
]

DEFAULT_BASE_URL: Final = "https://graph.facebook.com"
DEFAULT_VERSION: Final = "v23.0"
DEFAULT_MEDIA_HOSTS: Final = ("fbsbx.com",)
"""Hosts (and their subdomains) the bearer token may be sent to besides ``base_url``."""

SyncType = Literal["smb_app_state_sync", "history"]
_SYNC_TYPES: Final = frozenset({"smb_app_state_sync", "history"})


def _segment(value: str, name: str) -> str:
    """One URL path segment; ids are opaque but must not walk the path."""
    if not value or value in {".", ".."} or any(c in value for c in "/?#\\\r\n"):
        raise ValueError(f"{name} is not a valid Graph id: {value!r}")
    return quote(value, safe="")


@contextlib.contextmanager
def _mapped_http_errors(what: str) -> Iterator[None]:
    """httpx exceptions → our tree (transport problems are retryable)."""
    try:
        yield
    except httpx.TransportError as exc:  # connect, read, write, timeouts, protocol
        raise GraphUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        raise GraphError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _json_or_none(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both subclass it
        return None


# ---------------------------------------------------------------------------- client


class GraphClient:
    """WhatsApp Cloud API calls the archive needs. Thread-safe if the httpx client is."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        token: str,
        base_url: str = DEFAULT_BASE_URL,
        version: str = DEFAULT_VERSION,
        retry: RetryPolicy | None = None,
        media_hosts: tuple[str, ...] = DEFAULT_MEDIA_HOSTS,
    ) -> None:
        if not token:
            raise ValueError("a Graph API access token is required")
        self._http = http
        self._token = token
        self._base = base_url.rstrip("/")
        self._version = _segment(version, "version")
        self._retry = retry if retry is not None else RetryPolicy()
        self._media_hosts = tuple(h.lower().lstrip(".") for h in media_hosts)
        base = urlsplit(self._base)
        self._base_origin = (base.scheme, (base.hostname or "").lower(), base.port)

    def __repr__(self) -> str:  # never show the token
        return f"GraphClient(base_url={self._base!r}, version={self._version!r})"

    # -- plumbing

    def _url(self, *segments: str) -> str:
        return "/".join([self._base, self._version, *segments])

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _get_json(self, url: str, *, params: Mapping[str, str], what: str) -> object:
        with _mapped_http_errors(what):
            response = self._http.get(url, params=params, headers=self._auth())
        body = _json_or_none(response)
        error = error_for(response.status_code, body, what=what)
        if error is not None:
            raise error
        if body is None:
            raise GraphBadResponse(f"{what}: answer is not JSON", http_status=response.status_code)
        return body

    def _post_json(self, url: str, content: bytes, *, what: str) -> httpx.Response:
        headers = {**self._auth(), "Content-Type": "application/json"}
        with _mapped_http_errors(what):
            return self._http.post(url, content=content, headers=headers)

    def _may_carry_token(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if (parts.scheme, host, parts.port) == self._base_origin:
            return True
        return parts.scheme == "https" and any(
            host == h or host.endswith("." + h) for h in self._media_hosts
        )

    # -- media

    def get_media_url(self, media_id: str, phone_number_id: str | None = None) -> MediaInfo:
        """``GET /<VERSION>/<MEDIA_ID>``: a 5-minute download URL plus hash and size.

        Raises GraphNotFound (unknown or deleted id), GraphAuthError, GraphUnavailable
        (after the retry policy gave up), GraphBadResponse.
        """
        return self._retry.call(self._media_info_once, media_id, phone_number_id)

    def _media_info_once(self, media_id: str, phone_number_id: str | None) -> MediaInfo:
        params = {} if phone_number_id is None else {"phone_number_id": phone_number_id}
        what = f"media {media_id}"
        body = self._get_json(self._url(_segment(media_id, "media_id")), params=params, what=what)
        return parse_media_info(body, media_id=media_id)

    def download_media(
        self,
        media_id: str,
        *,
        phone_number_id: str | None = None,
        max_bytes: int = DEFAULT_MAX_MEDIA_BYTES,
        expected_sha256: str | None = None,
        first_seen: datetime | None = None,
        now: datetime | None = None,
    ) -> MediaBlob:
        """Fetch a media id's bytes and check them against Meta's SHA-256.

        ``expected_sha256`` (hex or base64, e.g. from the webhook) must agree with
        Meta's too. A 404 on the download URL fetches a fresh URL once (5-minute
        life). With ``first_seen``, a not-found past the 7-day life becomes
        MediaExpired. Raises MediaHashMismatch, MediaTooLarge, GraphNotFound,
        GraphAuthError, GraphUnavailable, GraphBadResponse, GraphError.
        """
        expected = None if expected_sha256 is None else normalise_sha256(expected_sha256)
        try:
            return self._retry.call(
                self._download_once, media_id, phone_number_id, max_bytes, expected
            )
        except GraphNotFound as exc:
            if first_seen is not None and not isinstance(exc, MediaExpired):
                at = now if now is not None else datetime.now(UTC)
                if at >= media_deadline(first_seen):
                    raise MediaExpired(
                        f"media {media_id}: gone, first seen {first_seen.isoformat()}",
                        http_status=exc.http_status,
                        meta_error=exc.meta_error,
                    ) from exc
            raise

    def _download_once(
        self, media_id: str, phone_number_id: str | None, max_bytes: int, expected: str | None
    ) -> MediaBlob:
        info = self._media_info_once(media_id, phone_number_id)
        if expected is not None and expected != info.sha256_hex:
            raise MediaHashMismatch(
                f"media {media_id}: Meta's sha256 differs from the webhook's",
                details={"webhook": expected, "meta": info.sha256_hex},
            )
        if info.file_size is not None and info.file_size > max_bytes:
            raise MediaTooLarge(
                f"media {media_id}: file_size {info.file_size} > {max_bytes}",
                details={"file_size": info.file_size, "max_bytes": max_bytes},
            )
        try:
            return self._fetch_blob(info, max_bytes)
        except GraphNotFound:
            # The URL lives 5 minutes; Meta says: on 404 get a fresh one.
            fresh = self._media_info_once(media_id, phone_number_id)
            return self._fetch_blob(fresh, max_bytes)

    def _fetch_blob(self, info: MediaInfo, max_bytes: int) -> MediaBlob:
        what = f"media {info.id} download"
        if not self._may_carry_token(info.url):
            raise GraphError(
                f"{what}: refusing to send the access token to {urlsplit(info.url).hostname!r}"
                " (not base_url and not in media_hosts)"
            )
        digest = hashlib.sha256()
        data = bytearray()
        with (
            _mapped_http_errors(what),
            self._http.stream("GET", info.url, headers=self._auth()) as response,
        ):
            if response.status_code >= 400:
                response.read()
                error = error_for(response.status_code, _json_or_none(response), what=what)
                raise error or GraphError(what)
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise MediaTooLarge(f"{what}: Content-Length {declared} > {max_bytes}")
            for chunk in response.iter_bytes():
                if len(data) + len(chunk) > max_bytes:
                    raise MediaTooLarge(f"{what}: body exceeds {max_bytes} bytes")
                digest.update(chunk)
                data += chunk
            header_mime = response.headers.get("content-type", "")
        actual = digest.hexdigest()
        if actual != info.sha256_hex:
            raise MediaHashMismatch(
                f"{what}: sha256 {actual} != Meta's {info.sha256_hex}",
                details={"expected": info.sha256_hex, "actual": actual, "size": len(data)},
            )
        return MediaBlob(
            data=bytes(data),
            mime_type=info.mime_type or header_mime,
            sha256_hex=actual,
            size=len(data),
        )

    # -- send proxy

    def send_message(self, phone_number_id: str, payload: Mapping[str, Any] | bytes) -> SendResult:
        """Forward a send request verbatim to ``POST /<VERSION>/<PHONE_NUMBER_ID>/messages``.

        ``payload`` as bytes is sent byte for byte; a mapping is sent as compact
        UTF-8 JSON. Any JSON answer — success or Meta error — is returned, never
        raised, so the proxy can archive it. Never retried (a resend is a second
        message). Raises GraphUnavailable (network, or a 5xx/429 without a JSON
        body) and GraphBadResponse (other non-JSON answers).
        """
        what = f"send via {phone_number_id}"
        url = self._url(_segment(phone_number_id, "phone_number_id"), "messages")
        content = (
            payload
            if isinstance(payload, bytes)
            else json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        )
        response = self._post_json(url, content, what=what)
        body = _json_or_none(response)
        if not isinstance(body, dict):
            cls = (
                GraphUnavailable
                if response.status_code >= 500 or response.status_code == 429
                else GraphBadResponse
            )
            raise cls(
                f"{what}: HTTP {response.status_code}, answer is not a JSON object",
                http_status=response.status_code,
                details={"raw_body": response.content[:2048].decode("utf-8", "replace")},
            )
        wamids, contacts = parse_send_body(body)
        return SendResult(
            status_code=response.status_code,
            body=body,
            wamids=wamids,
            contacts=contacts,
            raw_body=response.content,
        )

    # -- Coexistence onboarding

    def request_smb_app_data(self, phone_number_id: str, sync_type: SyncType) -> str:
        """``POST /<VERSION>/<PHONE_NUMBER_ID>/smb_app_data``; returns Meta's ``request_id``.

        Meta allows each ``sync_type`` once per onboarding (within 24 h), so this is
        never retried. Raises GraphRequestError (e.g. already requested),
        GraphAuthError, GraphUnavailable, GraphBadResponse.
        """
        if sync_type not in _SYNC_TYPES:
            raise ValueError(f"sync_type must be one of {sorted(_SYNC_TYPES)}: {sync_type!r}")
        what = f"smb_app_data {sync_type} for {phone_number_id}"
        url = self._url(_segment(phone_number_id, "phone_number_id"), "smb_app_data")
        content = json.dumps({"messaging_product": "whatsapp", "sync_type": sync_type}).encode()
        response = self._post_json(url, content, what=what)
        body = _json_or_none(response)
        error = error_for(response.status_code, body, what=what)
        if error is not None:
            raise error
        request_id = body.get("request_id") if isinstance(body, dict) else None
        if not isinstance(request_id, str | int) or isinstance(request_id, bool):
            raise GraphBadResponse(f"{what}: no request_id", details=body)
        return str(request_id)

    def get_phone_number_platform(self, phone_number_id: str) -> PhoneNumberPlatform:
        """``GET /<VERSION>/<PHONE_NUMBER_ID>?fields=is_on_biz_app,platform_type``.

        A missing ``is_on_biz_app`` reads as False (Graph omits unset fields).
        """
        what = f"phone number {phone_number_id}"
        body = self._retry.call(
            self._get_json,
            self._url(_segment(phone_number_id, "phone_number_id")),
            params={"fields": "is_on_biz_app,platform_type"},
            what=what,
        )
        if not isinstance(body, dict):
            raise GraphBadResponse(f"{what}: answer is not a JSON object")
        on_app = body.get("is_on_biz_app", False)
        platform = body.get("platform_type")
        if not isinstance(on_app, bool) or not (platform is None or isinstance(platform, str)):
            raise GraphBadResponse(f"{what}: unexpected field types", details=body)
        return PhoneNumberPlatform(is_on_biz_app=on_app, platform_type=platform)
