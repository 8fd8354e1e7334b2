"""Retention and consent policies as data, and the pure engine that applies them.

Imports nothing of ``archiver`` (import-linter contract). Public API::

    load_policies(dirs, params) -> PolicySet          (policies.loader)
    builtin_dir() -> Path
    decide(policy_set, facts, now) -> Decision        (policies.engine, pure)
    explain(decision) -> str
    erasure_check(decisions, holds) -> ErasureVerdict(allowed, reason)
"""

from policies.engine import ErasureVerdict, decide, erasure_check, explain, match
from policies.errors import PolicyError, PolicyFileError, PolicyParamError
from policies.loader import builtin_dir, load_policies, load_policy_file
from policies.model import (
    Decision,
    Disposition,
    Erasure,
    Kind,
    LockMode,
    Policy,
    PolicySet,
    RecordFacts,
)

__all__ = [
    "Decision",
    "Disposition",
    "Erasure",
    "ErasureVerdict",
    "Kind",
    "LockMode",
    "Policy",
    "PolicyError",
    "PolicyFileError",
    "PolicyParamError",
    "PolicySet",
    "RecordFacts",
    "builtin_dir",
    "decide",
    "erasure_check",
    "explain",
    "load_policies",
    "load_policy_file",
    "match",
]
