"""Index errors (the ``search`` package imports nothing from ``archiver``; the API maps
their codes to HTTP statuses at the edge, ``archiver.api.errors``).

    SearchError
    ├── IndexUnavailable   backend unreachable
    ├── QuerySyntaxError   bad query; carries the position
    │   └── QueryTooComplex  over a grammar limit (length, depth, terms); names it
    ├── InvalidRequest     bad filter/facet/cursor in a SearchRequest
    └── InvalidDocument    a document the index refuses (unknown field, bad value)
"""

from __future__ import annotations

from typing import ClassVar


class SearchError(Exception):
    code = "index_error"


class IndexUnavailable(SearchError):
    code = "index_unavailable"


class QuerySyntaxError(SearchError):
    code = "query_syntax"

    def __init__(self, message: str, *, position: int, query: str) -> None:
        super().__init__(f"{message} at position {position}")
        self.message = message
        self.position = position
        self.query = query


class QueryTooComplex(QuerySyntaxError):
    """The query is over one of the grammar's limits (``search.query.LIMITS``).

    ``code`` names the limit: ``query_too_long`` (characters), ``query_too_deep``
    (groups and negations inside each other), ``query_too_many_terms`` (search terms);
    ``limit`` is the limit's name and ``maximum`` its value.
    """

    CODES: ClassVar[dict[str, str]] = {
        "length": "query_too_long",
        "depth": "query_too_deep",
        "terms": "query_too_many_terms",
    }

    def __init__(
        self, message: str, *, position: int, query: str, limit: str, maximum: int
    ) -> None:
        super().__init__(message, position=position, query=query)
        self.code = self.CODES[limit]
        self.limit = limit
        self.maximum = maximum


class InvalidRequest(SearchError):
    """An unknown filter field or facet, a bad size, or a cursor from another query."""

    code = "invalid_request"


class InvalidDocument(SearchError):
    """``search.documents.validate`` refused a document; the indexer has a bug."""

    code = "invalid_document"
