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
    with start_server(bundle=bundle, prediction_log=tmp_path_factory.mktemp("log") / "p.jsonl",
                      admin_token="s3cret") as handle:
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


# --------------------------------------------------------------------------- schemathesis, all checks

SCHEMATHESIS = """
[generation]
max-examples = 25
mode = "all"
database = "none"

[phases]
stateful.enabled = false

# JSON Schema cannot say "each dataframe_split row has one value per column", "every inputs list has
# the same length" or "this text/csv string is CSV": the server checks those and answers 422 or 400
# (documented), so those are accepted answers to schema-valid data here, and only here.
[[operations]]
include-path = "/invocations"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "422"]
"""


def _api_schema():
    """The schema the server publishes (built from the app itself at collection time, so pytest gets one
    test per operation; schemathesis' lazy fixture loader does not work with this pytest)."""
    import schemathesis
    from schemathesis.config import SchemathesisConfig

    from mlops_lab.serving import create_app

    document = create_app(load_model=lambda: None).openapi()
    return document, schemathesis.openapi.from_dict(document, config=SchemathesisConfig.from_str(SCHEMATHESIS))


DOCUMENT, schema = _api_schema()


def test_the_server_publishes_the_schema_under_test(server):
    assert httpx.get(f"{server.url}/openapi.json").json() == DOCUMENT


@schema.parametrize()
def test_every_answer_is_documented_and_no_input_gives_a_5xx(case, server):
    """Schemathesis with all its checks against the real server: no 5xx, every status, content type,
    header and body as documented, schema-valid data accepted, invalid data rejected."""
    case.call_and_validate(base_url=server.url)
