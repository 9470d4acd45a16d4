"""Offline API docs: ``/docs`` (Swagger UI) and ``/redoc`` load their scripts and styles from the service itself
(the files fastapi-offline ships), never from a CDN, also under a route prefix."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from tests.serve.common import TIMEOUT

# Every URL an HTML page makes the browser load: src=, href=, ReDoc's spec-url=, Swagger UI's ``url: '...'``.
REFERENCES = re.compile(r"""(?:\bsrc|\bhref|\bspec-url)\s*=\s*["']([^"']+)["']|\burl:\s*["']([^"']+)["']""")
# What each asset must be: a piece of its own content.
SIGNATURES = {"swagger-ui-bundle.js": "SwaggerUIBundle", "swagger-ui.css": ".swagger-ui", "redoc.standalone.js": "Redoc",
              "openapi.json": '"openapi"', "favicon.png": "\x89PNG"}


def references(html: str) -> list[str]:
    return [a or b for a, b in REFERENCES.findall(html)]


@pytest.mark.parametrize("app", ["text-classification", "fill-mask"])  # served at the root and under /fill-mask
@pytest.mark.parametrize(("page", "assets"), [
    ("docs", {"swagger-ui-bundle.js", "swagger-ui.css", "openapi.json", "favicon.png"}),
    ("redoc", {"redoc.standalone.js", "openapi.json", "favicon.png"}),
])
def test_docs_pages_load_only_local_assets(urls, app, page, assets):
    base = urls[app]
    r = requests.get(f"{base}/{page}", timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.text[:200]
    assert not re.search(r"https?://|//cdn|fonts\.googleapis", r.text), r.text  # nothing off this server
    found = references(r.text)
    names = {urlsplit(u).path.rsplit("/", 1)[-1] for u in found}
    assert assets <= names, found
    prefix = urlsplit(base).path
    for ref in found:
        assert ref.startswith(f"{prefix}/"), f"{ref} is not under the application's prefix {prefix!r}"
        asset = requests.get(urljoin(base, ref), timeout=TIMEOUT)
        assert asset.status_code == 200, (ref, asset.status_code)
        name = urlsplit(ref).path.rsplit("/", 1)[-1]
        body = asset.content.decode("latin-1")
        assert SIGNATURES[name] in body, f"{ref} is not {name}"
        if name.endswith(".js"):
            assert len(asset.content) > 100_000, f"{ref}: {len(asset.content)} bytes, not the whole bundle"
