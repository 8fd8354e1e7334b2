"""Issue 15 #1: every policy against every record kind the engine really sees, pinned by a
reviewed table (``tests/data/policies/kind_table.json``), and the loader refusing a kind
or class that does not exist.

Regenerate the table after a deliberate change with
``WA_WRITE_KIND_TABLE=1 pytest tests/unit/policies/test_record_kinds.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from archiver.whatsapp.events import EventKind
from policies import PolicyFileError, builtin_dir, decide, load_policies, load_policy_file, match
from policies.model import EVENT_KINDS, KIND_CLASSES, RECORD_KINDS, PolicySet, RecordFacts
from tests.conftest import REPO

TABLE = REPO / "tests" / "data" / "policies" / "kind_table.json"
T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
ALL = ("finra_4511", "gdpr", "hipaa", "hipaa_phi_messages", "mifid2", "sec_17a4")
# The reproduction of the issue, and the usual EU investment-firm pairing.
COMBINATIONS = (("finra_4511", "gdpr"), ("sec_17a4",), ("mifid2", "gdpr"),
                ("hipaa", "hipaa_phi_messages", "gdpr"), ("gdpr",))


def _facts(kind: str) -> RecordFacts:
    return RecordFacts(
        business_number="15550783881", phone_number_id="106540352242922",
        direction="outbound" if kind in ("echo", "api_send") else "inbound",
        origin="business_app" if kind == "echo" else "customer",
        message_type="text", record_kind=kind, message_time=T0, capture_time=T0,
    )


def _set(*enabled: str) -> PolicySet:
    return load_policies([builtin_dir()], {f"{p}.enabled": "true" for p in enabled})


def _table() -> dict[str, Any]:
    every = _set(*ALL)
    applies = {
        pid: sorted(k for k in RECORD_KINDS if match(policy, _facts(k)) is not None)
        for pid, policy in every.policies.items() if pid != "default"
    }
    decisions: dict[str, dict[str, str]] = {}
    for combo in COMBINATIONS:
        ps = _set(*combo)
        row = {}
        for kind in sorted(RECORD_KINDS):
            d = decide(ps, _facts(kind), NOW)
            row[kind] = (f"{d.governing} until {d.retain_until.date()} {d.lock_mode.value} "
                         f"erasure {d.erasure.value}")
        decisions["+".join(combo)] = row
    return {"kinds": sorted(RECORD_KINDS), "classes": {c: sorted(k) for c, k in
                                                       sorted(KIND_CLASSES.items())},
            "applies": applies, "decisions": decisions}


def test_policy_by_record_kind_table_is_pinned() -> None:
    table = _table()
    if os.environ.get("WA_WRITE_KIND_TABLE"):
        TABLE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    assert table == json.loads(TABLE.read_text())


@pytest.mark.parametrize("regulation", ["finra_4511", "sec_17a4", "mifid2", "hipaa_phi_messages"])
@pytest.mark.parametrize("kind", sorted(KIND_CLASSES["communication"] | KIND_CLASSES["attachment"]
                                        | {"status", "raw_capture", "unknown", "unprocessable"}))
def test_regulations_keep_every_communication_and_attachment(regulation: str, kind: str) -> None:
    """The issue's reproduction: with finra_4511 + gdpr, an echo or a history message was
    governed by gdpr alone (GOVERNANCE, erasure allowed). Every regulation must govern
    what the business sends and receives, its attachments and its raw captures."""
    d = decide(_set(regulation, "gdpr"), _facts(kind), NOW)
    assert d.governing == regulation, (kind, d.reasons)
    assert d.lock_mode.value == "COMPLIANCE"
    assert d.erasure.value == "refused"


def test_event_kinds_are_the_parsers() -> None:
    """The engine's vocabulary is defined once (policies.model); the parser's kinds are it."""
    assert set(EVENT_KINDS) == {k.value for k in EventKind}
    assert all(kinds <= RECORD_KINDS for kinds in KIND_CLASSES.values())
    assert not set(KIND_CLASSES) & RECORD_KINDS  # a class never shadows a kind


def test_every_builtin_names_only_existing_kinds() -> None:
    for path in builtin_dir().glob("*.yaml"):
        for rule in load_policy_file(path).applies_to or ():
            assert rule.record_kinds is None or rule.record_kinds <= RECORD_KINDS


@pytest.mark.parametrize("name", ["media_blob", "audit", "Message", "communications"])
def test_the_loader_refuses_a_kind_or_class_that_does_not_exist(
    tmp_path: Path, name: str
) -> None:
    text = (builtin_dir() / "finra_4511.yaml").read_text().replace(
        "record_kind: [communication,", f"record_kind: [{name}, communication,")
    path = tmp_path / "finra_4511.yaml"
    path.write_text(text)
    with pytest.raises(PolicyFileError) as err:
        load_policy_file(path)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "record_kind:" in t)
    assert f"{path}:{line}: applies_to[0].record_kind: " in str(err.value)
    assert f"unknown record kind {name!r}" in str(err.value)
    assert "classes: attachment, communication, unclassified" in str(err.value)
