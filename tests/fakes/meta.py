"""A small fake of Meta's Graph API for the WhatsApp Cloud API, over real HTTP on loopback.

Answers as Meta documents (fixtures README §3, §4 and ``api/*.json``):

* ``GET /<v>/<MEDIA_ID>[?phone_number_id=]`` → ``{messaging_product, url, mime_type, sha256,
  file_size, id}``; an unknown id → HTTP 400, Graph code 100 / subcode 33.
* ``GET <url>`` (``/_media/<MEDIA_ID>/<nonce>``) → the bytes with ``Content-Type`` = MIME type;
  an expired URL → 404. Each media-URL answer mints a fresh nonce, so a "fresh URL" differs.
* ``POST /<v>/<PHONE_NUMBER_ID>/messages`` → ``{messaging_product, contacts[{input, wa_id |
  user_id}], messages[{id: "wamid.…"}]}`` or a configured Meta error.
* ``POST /<v>/<PHONE_NUMBER_ID>/smb_app_data`` → ``{messaging_product, request_id}``; a second
  call for the same ``sync_type`` is refused (Meta: "can be performed only once"; the exact
  error Meta returns is not published, ours is a Graph code-100 error).
* ``GET /<v>/<PHONE_NUMBER_ID>?fields=is_on_biz_app,platform_type``.
* With ``token=``, every request must carry ``Authorization: Bearer <token>``; otherwise
  HTTP 401 with Graph's OAuthException (code 190).

Test knobs: ``add_media``, ``expire_url`` (next N downloads 404), ``corrupt_media``,
``fail_next`` (N answers of 500/429/...), ``queue_send_error``, ``add_phone_number``;
``requests`` records what arrived. Admin over HTTP for benchmarks: ``PUT /_fake/media/<id>``
(body = bytes, ``Content-Type`` = MIME) registers media.

Standalone: ``python -m tests.fakes.meta --port 8765 [--token T]``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

_ID = r"[^/?#]+"

SEND_ERROR_NOT_ALLOWED: dict[str, Any] = {
    # Meta's well-known sandbox refusal (Cloud API "Error codes", 131030).
    "message": "(#131030) Recipient phone number not in allowed list",
    "type": "OAuthException",
    "code": 131030,
    "error_data": {
        "messaging_product": "whatsapp",
        "details": "Recipient phone number not in allowed list: Add recipient phone number "
        "to recipient list and try again.",
    },
}


def fbtrace_id() -> str:
    return "A" + secrets.token_urlsafe(16)[:22]


def graph_error(
    message: str, *, type_: str, code: int, subcode: int | None = None, **extra: Any
) -> dict[str, Any]:
    err: dict[str, Any] = {"message": message, "type": type_, "code": code}
    if subcode is not None:
        err["error_subcode"] = subcode
    err.update(extra)
    err["fbtrace_id"] = fbtrace_id()
    return {"error": err}


@dataclass
class FakeMedia:
    data: bytes
    mime_type: str
    sha256_format: Literal["hex", "base64"] = "hex"
    file_size_as: Literal["str", "int", "absent"] = "str"
    corrupt: bool = False
    expire_next: int = 0


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Failure:
    remaining: int
    status: int
    only: str | None


@dataclass
class _State:
    token: str | None
    version: str
    media: dict[str, FakeMedia] = field(default_factory=dict)
    phones: dict[str, dict[str, Any]] = field(default_factory=dict)
    smb_done: set[tuple[str, str]] = field(default_factory=set)
    send_errors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    failures: list[_Failure] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeMeta/1"
    protocol_version = "HTTP/1.1"
    state: _State  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    # -- plumbing

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Mapping[str, Any]) -> None:
        body = json.dumps(obj, separators=(",", ":")).encode()
        self._send(status, body, "application/json; charset=UTF-8")

    def _record(self) -> tuple[str, dict[str, list[str]], bytes]:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        with self.state.lock:
            self.state.requests.append(
                RecordedRequest(self.command, parts.path, query, dict(self.headers.items()), body)
            )
        return parts.path, query, body

    def _injected_failure(self, path: str) -> int | None:
        with self.state.lock:
            for failure in self.state.failures:
                if failure.remaining > 0 and (failure.only is None or failure.only in path):
                    failure.remaining -= 1
                    return failure.status
        return None

    def _authorised(self) -> bool:
        expected = self.state.token
        if expected is None:
            return True
        return self.headers.get("Authorization") == f"Bearer {expected}"

    def _handle(self) -> None:
        path, query, body = self._record()
        if path.startswith("/_fake/"):
            return self._admin(path, body)
        status = self._injected_failure(path)
        if status is not None:
            return self._json(
                status,
                graph_error(
                    "An unexpected error has occurred. Please retry your request later.",
                    type_="OAuthException",
                    code=2 if status >= 500 else 4,
                    is_transient=True,
                ),
            )
        if not self._authorised():
            return self._json(
                401,
                graph_error(
                    "Invalid OAuth access token - Cannot parse access token",
                    type_="OAuthException",
                    code=190,
                ),
            )
        v = self.state.version
        routes: list[tuple[str, str, Any]] = [
            ("GET", rf"/_media/({_ID})/({_ID})", self._download),
            ("POST", rf"/{v}/({_ID})/messages", self._messages),
            ("POST", rf"/{v}/({_ID})/smb_app_data", self._smb_app_data),
            ("GET", rf"/{v}/({_ID})", self._node),
        ]
        for method, pattern, fn in routes:
            match = re.fullmatch(pattern, path)
            if match and method == self.command:
                return fn(*match.groups(), query=query, body=body)
        self._json(
            400,
            graph_error(f"Unknown path components: {path}", type_="OAuthException", code=2500),
        )

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    # -- routes

    def _node(self, node_id: str, *, query: dict[str, list[str]], body: bytes) -> None:
        fields = query.get("fields", [""])[0]
        with self.state.lock:
            media = self.state.media.get(node_id)
            phone = self.state.phones.get(node_id)
        if media is not None:
            return self._json(200, self._media_info(node_id, media))
        if phone is not None and fields:
            wanted = fields.split(",")
            answer = {k: v for k, v in phone.items() if k in wanted}
            answer["id"] = node_id
            return self._json(200, answer)
        self._json(
            400,
            graph_error(
                f"Unsupported get request. Object with ID '{node_id}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation. Please "
                "read the Graph API documentation at https://developers.facebook.com/docs/graph-api",
                type_="GraphMethodException",
                code=100,
                subcode=33,
            ),
        )

    def _media_info(self, media_id: str, media: FakeMedia) -> dict[str, Any]:
        raw = hashlib.sha256(media.data).digest()
        sha = raw.hex() if media.sha256_format == "hex" else base64.b64encode(raw).decode()
        info: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "url": f"{self.state.base_url}/_media/{media_id}/{secrets.token_hex(8)}",
            "mime_type": media.mime_type,
            "sha256": sha,
            "id": media_id,
        }
        if media.file_size_as == "str":
            info["file_size"] = str(len(media.data))
        elif media.file_size_as == "int":
            info["file_size"] = len(media.data)
        return info

    def _download(self, media_id: str, _nonce: str, **_: Any) -> None:
        with self.state.lock:
            media = self.state.media.get(media_id)
            expired = media is not None and media.expire_next > 0
            if media is not None and expired:
                media.expire_next -= 1
        if media is None or expired:
            return self._send(404, b"Not Found", "text/plain")
        data = media.data
        if media.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:] if data else b"\x00"
        self._send(200, data, media.mime_type)

    def _messages(self, pnid: str, *, body: bytes, **_: Any) -> None:
        with self.state.lock:
            queued = self.state.send_errors.pop(0) if self.state.send_errors else None
        if queued is not None:
            status, error = queued
            return self._json(status, {"error": {**error, "fbtrace_id": fbtrace_id()}})
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or payload.get("messaging_product") != "whatsapp":
            return self._json(
                400,
                graph_error(
                    "(#100) The parameter messaging_product is required.",
                    type_="OAuthException",
                    code=100,
                ),
            )
        contact: dict[str, Any]
        if isinstance(payload.get("recipient"), str):  # business-scoped user id
            contact = {"input": payload["recipient"], "user_id": payload["recipient"]}
        elif isinstance(payload.get("to"), str):
            contact = {"input": payload["to"], "wa_id": re.sub(r"\D", "", payload["to"])}
        else:
            return self._json(
                400,
                graph_error(
                    "(#100) The parameter to is required.", type_="OAuthException", code=100
                ),
            )
        wamid = "wamid." + base64.b64encode(secrets.token_bytes(27)).decode()
        self._json(
            200,
            {"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": wamid}]},
        )

    def _smb_app_data(self, pnid: str, *, body: bytes, **_: Any) -> None:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        sync_type = payload.get("sync_type") if isinstance(payload, dict) else None
        if sync_type not in ("smb_app_state_sync", "history"):
            return self._json(
                400,
                graph_error(
                    "(#100) Param sync_type must be one of {smb_app_state_sync, history}",
                    type_="OAuthException",
                    code=100,
                ),
            )
        with self.state.lock:
            again = (pnid, sync_type) in self.state.smb_done
            self.state.smb_done.add((pnid, sync_type))
        if again:
            return self._json(
                400,
                graph_error(
                    f"(#100) {sync_type} has already been requested for this phone number",
                    type_="OAuthException",
                    code=100,
                ),
            )
        self._json(200, {"messaging_product": "whatsapp", "request_id": secrets.token_hex(12)})

    def _admin(self, path: str, body: bytes) -> None:
        match = re.fullmatch(rf"/_fake/media/({_ID})", path)
        if self.command == "PUT" and match:
            mime = self.headers.get("Content-Type", "application/octet-stream")
            with self.state.lock:
                self.state.media[match.group(1)] = FakeMedia(body, mime)
            return self._json(201, {"id": match.group(1)})
        self._json(404, {"error": "unknown admin path"})


class FakeMeta:
    """Context manager running the fake on 127.0.0.1 (port 0 = any free port)."""

    def __init__(
        self,
        *,
        token: str | None = "test-token",  # noqa: S107 -- a fake server's test credential
        version: str = "v23.0",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._state = _State(token=token, version=re.escape(version))
        handler = type("_BoundHandler", (_Handler,), {"state": self._state})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        bound_host, bound_port = self._server.server_address[:2]
        self.base_url = f"http://{bound_host!s}:{bound_port}"
        self._state.base_url = self.base_url
        self.token = token
        self.version = version
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FakeMeta:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeMeta:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- knobs

    def add_media(
        self,
        media_id: str,
        data: bytes,
        mime: str,
        *,
        sha256_format: Literal["hex", "base64"] = "hex",
        file_size_as: Literal["str", "int", "absent"] = "str",
    ) -> None:
        with self._state.lock:
            self._state.media[media_id] = FakeMedia(data, mime, sha256_format, file_size_as)

    def expire_url(self, media_id: str, times: int = 1) -> None:
        """The next ``times`` downloads of ``media_id`` answer 404 (URL past its 5 minutes)."""
        with self._state.lock:
            self._state.media[media_id].expire_next += times

    def corrupt_media(self, media_id: str) -> None:
        """Serve bytes that no longer match the advertised sha256."""
        with self._state.lock:
            self._state.media[media_id].corrupt = True

    def delete_media(self, media_id: str) -> None:
        with self._state.lock:
            self._state.media.pop(media_id, None)

    def fail_next(self, n: int, status: int = 500, *, only: str | None = None) -> None:
        """The next ``n`` requests (whose path contains ``only``) answer ``status``."""
        with self._state.lock:
            self._state.failures.append(_Failure(n, status, only))

    def queue_send_error(self, status: int = 400, error: Mapping[str, Any] | None = None) -> None:
        """The next send answers ``status`` with Meta's ``{"error": ...}``."""
        with self._state.lock:
            self._state.send_errors.append((status, dict(error or SEND_ERROR_NOT_ALLOWED)))

    def add_phone_number(
        self, phone_number_id: str, *, is_on_biz_app: bool = True, platform_type: str = "CLOUD_API"
    ) -> None:
        with self._state.lock:
            self._state.phones[phone_number_id] = {
                "is_on_biz_app": is_on_biz_app,
                "platform_type": platform_type,
            }

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def clear_requests(self) -> None:
        with self._state.lock:
            self._state.requests.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.meta", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="test-token", help="required bearer token ('' = none)")
    parser.add_argument("--version", default="v23.0")
    args = parser.parse_args(argv)
    fake = FakeMeta(token=args.token or None, version=args.version, host=args.host, port=args.port)
    print(f"FakeMeta listening on {fake.base_url}", flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
