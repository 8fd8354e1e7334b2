from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from policies import PolicySet, RecordFacts, builtin_dir, load_policies

T0 = datetime(2024, 2, 29, 12, 0, tzinfo=UTC)
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def make_facts(**kw: object) -> RecordFacts:
    base: dict[str, object] = {
        "business_number": "+15550001111", "phone_number_id": "1099", "direction": "inbound",
        "origin": "customer", "message_type": "text", "record_kind": "message",
        "message_time": T0, "capture_time": T0,
    }
    base.update(kw)
    return RecordFacts(**base)  # type: ignore[arg-type]


@pytest.fixture
def builtins() -> Callable[..., PolicySet]:
    def make(*enabled: str, **params: str) -> PolicySet:
        p = {f"{e}.enabled": "true" for e in enabled}
        p.update({k.replace("__", "."): v for k, v in params.items()})
        return load_policies([builtin_dir()], p)

    return make


@pytest.fixture
def facts() -> Callable[..., RecordFacts]:
    return make_facts


@pytest.fixture
def t0() -> datetime:
    return T0


@pytest.fixture
def now() -> datetime:
    return NOW
