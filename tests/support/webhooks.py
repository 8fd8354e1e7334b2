"""Build WhatsApp Cloud API webhook deliveries (shapes as in ../shared/fixtures/whatsapp)."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.support.apps import sign

WABA = "102290129340398"


class Number:
    """One business phone number of the WABA."""

    def __init__(self, display: str, phone_number_id: str) -> None:
        self.display = display
        self.pnid = phone_number_id

    def _delivery(self, field: str, value: dict[str, Any]) -> bytes:
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": self.display, "phone_number_id": self.pnid},
            **value,
        }
        body = {
            "object": "whatsapp_business_account",
            "entry": [{"id": WABA, "changes": [{"value": value, "field": field}]}],
        }
        return json.dumps(body).encode()

    def inbound(
        self, wa_id: str, wamid: str, ts: int, message: dict[str, Any], name: str = "Customer"
    ) -> bytes:
        return self._delivery(
            "messages",
            {
                "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                "messages": [{"from": wa_id, "id": wamid, "timestamp": str(ts), **message}],
            },
        )

    def text(self, wa_id: str, wamid: str, ts: int, body: str, name: str = "Customer") -> bytes:
        return self.inbound(wa_id, wamid, ts, {"type": "text", "text": {"body": body}}, name)

    def echo(self, wa_id: str, wamid: str, ts: int, body: str) -> bytes:
        return self._delivery(
            "smb_message_echoes",
            {
                "message_echoes": [
                    {
                        "from": self.display, "to": wa_id, "id": wamid, "timestamp": str(ts),
                        "type": "text", "text": {"body": body},
                    }
                ]
            },
        )  # fmt: skip

    def status(self, wa_id: str, wamid: str, ts: int, status: str) -> bytes:
        return self._delivery(
            "messages",
            {
                "statuses": [
                    {"id": wamid, "status": status, "timestamp": str(ts), "recipient_id": wa_id}
                ]
            },
        )

    def edit(self, wa_id: str, wamid: str, ts: int, original: str, body: str) -> bytes:
        message = {
            "type": "edit",
            "edit": {
                "original_message_id": original,
                "message": {"type": "text", "text": {"body": body}},
            },
        }
        return self.inbound(wa_id, wamid, ts, message)

    def revoke(self, wa_id: str, wamid: str, ts: int, original: str) -> bytes:
        message = {"type": "revoke", "revoke": {"original_message_id": original}}
        return self.inbound(wa_id, wamid, ts, message)

    def reaction(self, wa_id: str, wamid: str, ts: int, target: str, emoji: str) -> bytes:
        message = {"type": "reaction", "reaction": {"message_id": target, "emoji": emoji}}
        return self.inbound(wa_id, wamid, ts, message)

    def history(self, wa_id: str, items: list[tuple[str, int, str, bool]]) -> bytes:
        """``items``: (wamid, ts, body, from_customer)."""
        messages = [
            {
                "from": wa_id if mine else self.display, "id": wamid, "timestamp": str(ts),
                "type": "text", "text": {"body": body}, "history_context": {"status": "READ"},
            }
            for wamid, ts, body, mine in items
        ]  # fmt: skip
        return self._delivery(
            "history",
            {
                "history": [
                    {
                        "metadata": {"phase": 0, "chunk_order": 1, "progress": 100},
                        "threads": [{"id": wa_id, "messages": messages}],
                    }
                ]
            },
        )

    def contact_sync(self, wa_id: str, ts: int, full_name: str) -> bytes:
        return self._delivery(
            "smb_app_state_sync",
            {
                "state_sync": [
                    {
                        "type": "contact",
                        "contact": {
                            "full_name": full_name,
                            "first_name": full_name.split()[0],
                            "phone_number": wa_id,
                        },
                        "action": "add",
                        "metadata": {"timestamp": str(ts)},
                    }
                ]
            },
        )


def post(client: TestClient, body: bytes) -> None:
    response = client.post(
        "/webhooks/whatsapp",
        content=body,
        headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
