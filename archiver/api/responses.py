"""JSON answers serialised once, by orjson, for the read-heavy routes.

FastAPI's default path walks a returned dict through ``jsonable_encoder`` (and a response
model) before ``json.dumps``: about 5 ms for a page of 20 search hits with facets, a third
of the time Elasticsearch takes to answer. What these routes return is already plain JSON
data (strings, numbers, lists and dicts read from the index or the audit log), so one
orjson pass gives the same bytes' meaning at a few hundredths of a millisecond.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class FastJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        # Non-string dict keys are refused rather than coerced: a route returning one has a bug.
        return orjson.dumps(content)
