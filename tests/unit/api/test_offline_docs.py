"""/docs and /redoc load nothing from outside: their scripts, styles, favicon and fonts
are served by the app itself, so the docs work offline (issue 13, finding 7)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from archiver.runtime import Runtime

_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""")
_OUTSIDE = re.compile(r"(?:https?:)?//[^/\s\"']+")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_reference_no_outside_host(
    app_client: tuple[TestClient, Runtime], page: str
) -> None:
    client, _ = app_client
    r = client.get(page)
    assert r.status_code == 200
    html = r.text
    assert _OUTSIDE.findall(html) == [], html  # no CDN, favicon host or Google Fonts
    assets = [a or b for a, b in _URL.findall(html)]
    assert any(a.endswith(".js") for a in assets), html
    for asset in assets:  # every asset it names is served here
        assert client.get(asset).status_code == 200, asset
