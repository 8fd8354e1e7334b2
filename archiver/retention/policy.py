"""Applying the policy engine to records: the adapter between ``policies`` (pure, knows
nothing of records) and the processing pipeline."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from archiver.ingest.ports import PolicyRef, raw_capture_facts
from archiver.store.port import LockMode
from policies.engine import RULE_OBLIGATION, decide
from policies.loader import builtin_dir, load_policies
from policies.model import Decision, PolicySet, RecordFacts


def load_policy_set(extra_dir: Path | None, params: Mapping[str, str] | None = None) -> PolicySet:
    """Built-in policies plus the operator's folder; a bad file raises PolicyFileError
    naming file, line and field (start-up stops)."""
    dirs = [builtin_dir()]
    if extra_dir is not None:
        dirs.append(extra_dir)
    return load_policies(dirs, params or {})


def policy_fingerprint(policy_set: PolicySet) -> str:
    """SHA-256 of the enabled policies as loaded (ids, periods, clocks, actions…): any
    change an operator makes to what the engine decides changes it."""
    doc = [p.model_dump(mode="python") for p in policy_set.enabled]
    text = json.dumps(doc, sort_keys=True, default=_canonical)
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: object) -> object:
    # Sets sort (their iteration order varies between processes); the rest by text.
    if isinstance(value, set | frozenset):
        return sorted(str(v) for v in value)
    return str(value)


class EngineDecider:
    """``PolicyDecider`` backed by the pure engine. ``floor_lock`` can force COMPLIANCE."""

    def __init__(
        self,
        policy_set: PolicySet,
        *,
        lock_override: LockMode | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.policy_set = policy_set
        self.lock_override = lock_override
        self.clock = clock

    @property
    def fingerprint(self) -> str:
        return policy_fingerprint(self.policy_set)

    def decision(self, facts: RecordFacts) -> Decision:
        return decide(self.policy_set, facts, self.clock())

    def decide(self, facts: RecordFacts) -> PolicyRef:
        decision = self.decision(facts)
        mode = self.lock_override or LockMode(decision.lock_mode.value)
        return PolicyRef(
            policy_id=decision.governing,
            retain_until=decision.retain_until,
            lock_mode=mode,
            matched=tuple(decision.matched),
        )

    def raw_capture_until(self, captured_at: datetime) -> datetime | None:
        """What an obligation requires of a raw capture batch captured at ``captured_at``
        (policies naming ``raw_capture``), or None when none applies: the raw floor
        (``ARCHIVER_RAW_RETENTION_DAYS``) is then the house period, not the default policy."""
        return raw_capture_until(self.decision(raw_capture_facts(captured_at)))


def raw_capture_until(decision: Decision) -> datetime | None:
    """The retain-until an obligation sets for a ``raw_capture`` decision, else None."""
    return decision.retain_until if decision.conflict_rule == RULE_OBLIGATION else None
