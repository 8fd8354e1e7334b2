"""Typed events parsed from WhatsApp Cloud API webhook deliveries (pure).

One delivery (``{"object", "entry": [{"changes": [{"field", "value"}]}]}``) yields many
events: one per message, echo, status, history item/message, contact-sync item,
preference, call, error, or admin update. See ``parser.parse_delivery``.

Conventions shared by every event (the base :class:`Event`):

* ``dedup_key`` is stable across re-deliveries and re-batching: ``msg:<wamid>`` for
  messages, echoes and history messages (so one message seen through several sources
  merges), ``history_media:<wamid>`` for the later media follow-up of a history
  placeholder, ``status:<wamid>:<status>[:<participant>]``, ``call:<id>:<event>``;
  other kinds use ``<kind>:`` + SHA-256 (first 32 hex) of the RFC 8785 canonical JSON of
  the event's own object with its context (field, WABA, phone number id, entry time).
* ``content_hash`` is SHA-256 hex of the RFC 8785 canonical JSON of the meaningful
  content: for message-like kinds the message object without ``timestamp``, the
  from/to ids, ``history_context`` and media ``url`` (all source- or delivery-specific)
  plus the direction; for other kinds the event's own object.
* ``raw`` is the event's own JSON object exactly as parsed; ``unknown`` maps RFC 6901
  JSON pointers *into the delivery body* to every leaf no typed field consumed;
  ``consumed`` holds the pointers a typed field consumed (a pointer covers its subtree).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class EventKind(StrEnum):
    MESSAGE = "message"
    ECHO = "echo"
    STATUS = "status"
    HISTORY_MESSAGE = "history_message"
    HISTORY_MEDIA = "history_media"
    HISTORY_CHUNK = "history_chunk"
    HISTORY_ERROR = "history_error"
    CONTACT_SYNC = "contact_sync"
    USER_PREFERENCE = "user_preference"
    ACCOUNT_UPDATE = "account_update"
    TEMPLATE_UPDATE = "template_update"
    PHONE_NUMBER_UPDATE = "phone_number_update"
    BUSINESS_UPDATE = "business_update"
    CALL = "call"
    WEBHOOK_ERROR = "webhook_error"
    API_SEND = "api_send"  # a message the business sent through our send proxy
    UNKNOWN = "unknown"


class Origin(StrEnum):
    CUSTOMER = "customer"
    BUSINESS_APP = "business_app"
    BUSINESS_API = "business_api"
    HISTORY = "history"
    META = "meta"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    NONE = "none"


@dataclass(frozen=True)
class ContactRef:
    """A WhatsApp user as named by the payload; any part may be missing (BSUID era)."""

    wa_id: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None
    username: str | None = None
    name: str | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.wa_id or self.user_id or self.parent_user_id or self.username)


@dataclass(frozen=True)
class MediaRef:
    """A media attachment; ``sha256`` is kept as sent (base64 or hex, see media.py)."""

    media_id: str | None
    mime_type: str | None = None
    sha256: str | None = None
    filename: str | None = None
    url: str | None = None
    voice: bool | None = None
    animated: bool | None = None


@dataclass(frozen=True)
class ErrorInfo:
    """One entry of an ``errors[]`` array (Graph API error shape)."""

    code: int | None
    title: str | None = None
    message: str | None = None
    details: str | None = None
    href: str | None = None


@dataclass(frozen=True)
class Location:
    latitude: float | None
    longitude: float | None
    name: str | None = None
    address: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Problem:
    """Something odd in a delivery; parsing went on. ``code`` is machine-readable."""

    code: str
    pointer: str
    message: str


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: EventKind
    field: str | None
    waba_id: str | None
    phone_number_id: str | None
    display_phone_number: str | None
    dedup_key: str
    content_hash: str
    occurred_at: datetime | None
    origin: Origin
    direction: Direction
    contact: ContactRef | None = None
    group_id: str | None = None
    message_id: str | None = None
    message_type: str | None = None
    texts: tuple[str, ...] = ()
    media: tuple[MediaRef, ...] = ()
    reply_to: str | None = None
    edit_of: str | None = None
    revoke_of: str | None = None
    errors: tuple[ErrorInfo, ...] = ()
    entry_time: datetime | None = None
    raw: Any = None
    unknown: Mapping[str, Any] = dc_field(default_factory=lambda: _EMPTY)
    consumed: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True)
class MessageEvent(Event):
    """``message``, ``echo``, ``history_message`` and ``history_media`` events."""

    reply_to_from: str | None = None
    forwarded: bool = False
    frequently_forwarded: bool = False
    reaction_to: str | None = None
    reaction_emoji: str | None = None
    location: Location | None = None
    interactive_type: str | None = None
    reply_id: str | None = None
    system_type: str | None = None
    system_preference: str | None = None  # ``marketing`` of ``user_preference_changed``
    changed_to: ContactRef | None = None
    unsupported_type: str | None = None
    history_status: str | None = None
    referral: Mapping[str, Any] | None = None
    referred_product: Mapping[str, Any] | None = None
    order: Mapping[str, Any] | None = None
    contact_cards: tuple[Mapping[str, Any], ...] = ()
    identity: Mapping[str, Any] | None = None
    call_permission: Mapping[str, Any] | None = None
    flow_name: str | None = None


@dataclass(frozen=True, kw_only=True)
class StatusEvent(Event):
    status: str | None = None
    recipient_type: str | None = None
    conversation: Mapping[str, Any] | None = None
    pricing: Mapping[str, Any] | None = None
    callback_data: str | None = None


@dataclass(frozen=True, kw_only=True)
class HistoryChunkEvent(Event):
    phase: int | None = None
    chunk_order: int | None = None
    progress: int | None = None
    thread_ids: tuple[str, ...] = ()
    message_count: int = 0


@dataclass(frozen=True, kw_only=True)
class ContactSyncEvent(Event):
    action: str | None = None
    sync_type: str | None = None
    full_name: str | None = None
    first_name: str | None = None


@dataclass(frozen=True, kw_only=True)
class UserPreferenceEvent(Event):
    category: str | None = None
    value: str | None = None
    detail: str | None = None
    signup_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class AdminEvent(Event):
    """``account_update``, ``template_update``, ``phone_number_update``, ``business_update``.

    ``event`` is the payload's ``event``/``decision`` name; ``attributes`` holds the
    typed scalar attributes we recognise (template id/name/category, disconnection
    reason, quality scores, ...); everything else stays in ``unknown``.
    """

    event: str | None = None
    attributes: Mapping[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class CallEvent(Event):
    call_id: str | None = None
    call_event: str | None = None
    call_direction: str | None = None
    status: str | None = None
    duration: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    callback_data: str | None = None


@dataclass(frozen=True)
class ParseResult:
    events: tuple[Event, ...]
    problems: tuple[Problem, ...]
