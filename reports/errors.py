"""Errors of the reports package. ``reports`` imports nothing of ``archiver``, so it has
its own root; the service maps ``ReportsError`` to its own error shape at the edge.

    ReportsError                code: "report_invalid"
    ├── FactsError              facts are malformed: names the field and the value's problem
    ├── TwinError               twin bytes are not a canonical twin (reports.twin)
    └── RenderError             a template asked for a figure the twin lacks, or a bad
                                hash / report id was passed (reports.render)
"""

from __future__ import annotations


class ReportsError(Exception):
    """Root of every deliberate error raised by ``reports``."""

    code: str = "report_invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FactsError(ReportsError):
    code = "report_facts_invalid"
