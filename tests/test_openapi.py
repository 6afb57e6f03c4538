"""The API's documentation: /docs and /redoc work offline (assets served by the app itself)."""

import re
from urllib.parse import urljoin

import httpx
import pytest

from mlops_lab.serving import export_bundle, start_server

from .conftest import using_home


@pytest.fixture(scope="module")
def server(course_home, tmp_path_factory):
    with using_home(course_home):
        bundle = export_bundle(tmp_path_factory.mktemp("bundle"))
    with start_server(bundle=bundle, prediction_log=tmp_path_factory.mktemp("log") / "p.jsonl") as handle:
        yield handle


@pytest.mark.parametrize("page, script", [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")])
def test_docs_pages_load_everything_from_the_app_itself(server, page, script):
    html = httpx.get(server.url + page).text
    links = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?'([^']+)'|spec-url="([^"]+)\"""", html)
    links = [next(part for part in found if part) for found in links]
    assert any(link.endswith(script) for link in links) and any(link.endswith("openapi.json") for link in links)
    for link in links:
        # Relative links: they resolve under any prefix, e.g. Jupyter's /proxy/PORT/docs.
        assert not re.match(r"^(https?:)?//|^/", link), f"{page} loads {link} from outside the app or from its root"
        assert urljoin(f"/proxy/{server.port}{page}", link).startswith(f"/proxy/{server.port}/")
        response = httpx.get(urljoin(server.url + page, link))
        assert response.status_code == 200, link
        assert len(response.content) > 1000, link
    assert "cdn." not in html and "fonts.googleapis" not in html
