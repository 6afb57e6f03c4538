"""Lab 04 after Run All, as a learner in JupyterLab finds it (issue 23): the server is still running,
so the /docs link and "Go further" work and going back to 4.2 gives its verdict without an error;
the last cell stops the server only when asked, safely twice; and a server nobody stopped ends with
the kernel."""

import time
from pathlib import Path

import httpx
import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import ROOT

NOTEBOOK = ROOT / "solutions" / "04_serving.ipynb"


def _run(client, nb, source: str) -> list:
    cell = nbformat.v4.new_code_cell(source)
    nb.cells.append(cell)
    client.execute_cell(cell, len(nb.cells) - 1)
    return cell.outputs


def _text(outputs) -> str:
    return "".join(o.get("text", "") or "".join(o.get("data", {}).get("text/plain", "")) for o in outputs)


def _errors(outputs) -> list:
    return [o for o in outputs if o.get("output_type") == "error" or o.get("name") == "stderr"
            and "Error" in o.get("text", "")]


def _gone(url: str, timeout: float = 60) -> bool:
    """Nothing listens at ``url`` any more (the server runs in a thread of the kernel: it ends when stopped,
    or with the kernel)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{url}/health", timeout=2)
        except httpx.ConnectError:
            return True
        except httpx.HTTPError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


@pytest.mark.timeout(900)
def test_lab_04_keeps_its_server_after_run_all_and_stops_it_when_asked(use_course_home, tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = "FAST = True"
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        for index, cell in enumerate(list(nb.cells)):
            client.execute_cell(cell, index)
            assert not [o for o in cell.get("outputs", []) if o.get("output_type") == "error"], cell.source
        assert "True" in _text(_run(client, nb, "print(server.running)")), "Run All stopped the server"
        url = _text(_run(client, nb, "print(server.url)")).strip()
        assert httpx.get(f"{url}/docs", timeout=10).status_code == 200, "/docs does not answer after Run All"
        link = next(o for c in nb.cells if c.get("id") == "s04-04" for o in c.outputs
                    if "text/html" in o.get("data", {}))
        assert '<a href="http://127.0.0.1:' in link["data"]["text/html"] and "/docs" in link["data"]["text/html"]

        # back to 4.2 after Run All: the verdict, and the payment sent, without an error
        check = next(c for c in nb.cells if c.get("id") == "s04-13")
        send = next(c for c in nb.cells if c.get("id") == "s04-43")
        for cell in (check, send):
            outputs = _run(client, nb, cell.source)
            assert not _errors(outputs), outputs
        assert "decision:" in _text(outputs)

        # the last cell, as the learner runs it: twice, then asked to stop, twice
        stop = next(c for c in nb.cells if c.get("id") == "s04-24")
        for _ in range(2):
            assert "still running" in _text(_run(client, nb, stop.source))
        asked = stop.source.replace("stop_the_server = False", "stop_the_server = True")
        for _ in range(2):
            outputs = _run(client, nb, asked)
            assert not _errors(outputs) and "server stopped" in _text(outputs), outputs
        assert _gone(url, timeout=5)

        # started again and left running, with payments just sent: it ends with the kernel, and no prediction is
        # lost (the log is written every 0.05 s while it runs; the stop registered with atexit closes it)
        _run(client, nb, next(c for c in nb.cells if c.get("id") == "s04-04").source)
        url = _text(_run(client, nb, "print(server.url)")).strip()
        assert httpx.get(f"{url}/ready", timeout=10).status_code == 200
        log = Path(_text(_run(client, nb, "print(prediction_log)")).strip())
        before = len(log.read_text().splitlines())
        outputs = _run(client, nb, "for _ in range(40):\n    client.post(f'{server.url}/predict', json=new_customer)")
        assert not _errors(outputs), outputs
    assert _gone(url), "a server nobody stopped outlived its kernel"
    assert len(log.read_text().splitlines()) == before + 40, "predictions sent before the kernel ended were lost"
