"""What the Graph API client returns, and the pure readers of Meta's answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from archiver.whatsapp.graph_errors import GraphBadResponse
from archiver.whatsapp.media import normalise_sha256, parse_file_size

__all__ = [
    "MediaBlob",
    "MediaInfo",
    "PhoneNumberPlatform",
    "SendResult",
    "parse_media_info",
    "parse_send_body",
]


@dataclass(frozen=True)
class MediaInfo:
    """``GET /<MEDIA_ID>``: where the bytes are and what they must hash to."""

    url: str
    mime_type: str
    sha256_hex: str
    file_size: int | None
    id: str


@dataclass(frozen=True)
class MediaBlob:
    """Downloaded media whose SHA-256 matched Meta's (only ever built after the check)."""

    data: bytes = field(repr=False)
    mime_type: str
    sha256_hex: str
    size: int


@dataclass(frozen=True)
class SendResult:
    """Meta's answer to a send, success or error alike: the proxy archives both."""

    status_code: int
    body: dict[str, Any]
    wamids: list[str]
    contacts: list[dict[str, Any]]
    raw_body: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300 and "error" not in self.body

    @property
    def error(self) -> dict[str, Any] | None:
        err = self.body.get("error")
        return err if isinstance(err, dict) else None


class PhoneNumberPlatform(NamedTuple):
    """``GET /<PHONE_NUMBER_ID>?fields=is_on_biz_app,platform_type``."""

    is_on_biz_app: bool
    platform_type: str | None


def parse_media_info(body: object, *, media_id: str) -> MediaInfo:
    """Read ``GET /<MEDIA_ID>``; ``sha256`` hex or base64, ``file_size`` str or int."""
    if not isinstance(body, dict):
        raise GraphBadResponse(f"media {media_id}: answer is not a JSON object")
    url, mime, digest = body.get("url"), body.get("mime_type"), body.get("sha256")
    if not isinstance(url, str) or not url:
        raise GraphBadResponse(f"media {media_id}: no url", details=body)
    if not isinstance(mime, str) or not mime:
        raise GraphBadResponse(f"media {media_id}: no mime_type", details=body)
    if not isinstance(digest, str):
        raise GraphBadResponse(f"media {media_id}: no sha256", details=body)
    try:
        sha256_hex = normalise_sha256(digest)
        file_size = parse_file_size(body.get("file_size"))
    except ValueError as exc:
        raise GraphBadResponse(f"media {media_id}: {exc}", details=body) from exc
    answered_id = body.get("id")
    return MediaInfo(
        url=url,
        mime_type=mime,
        sha256_hex=sha256_hex,
        file_size=file_size,
        id=str(answered_id) if isinstance(answered_id, str | int) else media_id,
    )


def parse_send_body(body: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """``messages[].id`` (wamids) and ``contacts[]`` of a send answer; empty on errors."""
    messages = body.get("messages")
    contacts = body.get("contacts")
    wamids = [
        m["id"]
        for m in (messages if isinstance(messages, list) else [])
        if isinstance(m, dict) and isinstance(m.get("id"), str)
    ]
    kept = [c for c in (contacts if isinstance(contacts, list) else []) if isinstance(c, dict)]
    return wamids, kept
