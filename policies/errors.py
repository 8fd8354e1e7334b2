"""Errors of the policy package. ``policies`` imports nothing of ``archiver``, so it has
its own root; the service maps ``PolicyError`` to ``archiver.errors.ConfigError`` at the edge.

    PolicyError                 code: "policy_invalid"
    ├── PolicyFileError         a policy file is unreadable or invalid: names file, line, field
    └── PolicyParamError        an operator parameter names no declared parameter / policy
"""

from __future__ import annotations


class PolicyError(Exception):
    """Root of every deliberate error raised by ``policies``."""

    code: str = "policy_invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PolicyFileError(PolicyError):
    """A policy file failed to parse or validate.

    ``problems`` holds one ``(line, field, message)`` per problem, lines 1-based;
    ``str(err)`` reads ``<file>:<line>: <field>: <message>`` per problem.
    """

    code = "policy_file_invalid"

    def __init__(self, path: str, problems: list[tuple[int, str, str]]) -> None:
        self.path = path
        self.problems = tuple(problems)
        lines = [f"{path}:{line}: {field}: {msg}" for line, field, msg in problems]
        super().__init__("\n".join(lines))


class PolicyParamError(PolicyError):
    code = "policy_param_invalid"
