"""The documents beside /openapi.json: /docs (Swagger UI, every asset shipped with the gateway), its assets,
/asyncapi.json (the event catalog) and /asyncapi.html. All public; nothing outside static/ is served."""

from __future__ import annotations

import json
import re

import pytest

from crm_contracts import asyncapi
from crm_gateway.tests.conftest import body


@pytest.fixture
def anonymous(api):
    api.token = None
    return api


def test_docs_is_a_page_whose_every_asset_is_served_by_the_gateway(anonymous):
    page = anonymous.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.get_data(as_text=True))
    scripts_and_styles = [a for a in assets if a.endswith((".js", ".css"))]
    assert len(scripts_and_styles) == 3
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not served by the gateway"
    for asset in scripts_and_styles:
        answer = anonymous.get(asset)
        assert answer.status_code == 200, asset
        assert answer.mimetype in ("text/css", "application/javascript", "text/javascript")
        assert len(answer.get_data()) > 0


def test_the_swagger_ui_licence_ships_with_it(anonymous):
    licence = anonymous.get("/docs/static/swagger-ui/LICENSE")
    assert licence.status_code == 200 and b"Apache License" in licence.get_data()


@pytest.mark.parametrize("name", ["nothing.js", "../routes/docs.py", "..%2Fauth.py", "swagger-ui", ""])
def test_nothing_but_the_shipped_assets_is_served(anonymous, name):
    answer = anonymous.get(f"/docs/static/swagger-ui/{name}")
    assert answer.status_code == 404 and body(answer)["error"]["code"] == "not_found"


def test_asyncapi_json_is_the_catalog(anonymous):
    answer = anonymous.get("/asyncapi.json")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert json.loads(answer.get_data()) == asyncapi.document()


def test_asyncapi_html_lists_every_channel(anonymous):
    answer = anonymous.get("/asyncapi.html")
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    page = answer.get_data(as_text=True)
    assert all(f'id="{channel}"' in page for channel in asyncapi.document()["channels"])
