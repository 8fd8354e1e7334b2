"""WhatsApp Cloud API webhooks: signature check and envelope → typed events (pure).

``media`` (pure rules) and the Graph API client live next to these but are not
re-exported here, so importing this package pulls in no I/O library.
"""

from archiver.whatsapp.events import (
    AdminEvent,
    CallEvent,
    ContactRef,
    ContactSyncEvent,
    Direction,
    ErrorInfo,
    Event,
    EventKind,
    HistoryChunkEvent,
    Location,
    MediaRef,
    MessageEvent,
    Origin,
    ParseResult,
    Problem,
    StatusEvent,
    UserPreferenceEvent,
)
from archiver.whatsapp.parser import parse_delivery
from archiver.whatsapp.signature import SignatureError, verify_signature

__all__ = [
    "AdminEvent",
    "CallEvent",
    "ContactRef",
    "ContactSyncEvent",
    "Direction",
    "ErrorInfo",
    "Event",
    "EventKind",
    "HistoryChunkEvent",
    "Location",
    "MediaRef",
    "MessageEvent",
    "Origin",
    "ParseResult",
    "Problem",
    "SignatureError",
    "StatusEvent",
    "UserPreferenceEvent",
    "parse_delivery",
    "verify_signature",
]
