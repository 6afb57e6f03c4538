"""What a learner does in JupyterLab, as Playwright steps: open a notebook, use the Run menu, type
into a cell, save. Selectors are JupyterLab 4's own CSS classes."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"


def open_notebook(page, lab, path: str, timeout: float = 120) -> None:
    """Open ``path`` (relative to the server's root) by its lab/tree URL, in a fresh layout (`reset`:
    no tabs restored from an earlier test), and wait until its own kernel is connected and idle."""
    import httpx

    page.goto(lab.page_url(f"lab/tree/{path}?reset"))
    page.locator(f"{NOTEBOOK} .jp-Cell").first.wait_for()
    deadline = time.monotonic() + timeout
    while True:  # the server's view: this notebook's kernel is idle and the page is connected to it
        sessions = httpx.get(f"{lab.url}/api/sessions", params={"token": lab.token}, timeout=10).json()
        kernel = next((s["kernel"] for s in sessions if s["path"] == path), None)
        if kernel and kernel.get("execution_state") == "idle" and kernel.get("connections", 0) > 0:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the kernel of {path} did not become idle and connected: {kernel}")
        time.sleep(0.5)
    wait_for_kernel(page, timeout)


def wait_for_kernel(page, timeout: float = 120) -> None:
    """Wait until the status bar says the current notebook's kernel is connected and idle."""
    page.locator(".jp-StatusBar-Widget").get_by_text(re.compile(r"\| Idle$")).wait_for(timeout=timeout * 1000)


def run_menu(page, item: str) -> None:
    """Click Run > ``item`` in the menu bar, as a learner would."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel").get_by_text(item, exact=True).click()


def wait_until_done(page, timeout: float = 300) -> None:
    """Wait until no cell is queued or running (its prompt shows [*])."""
    busy = f"{NOTEBOOK} .jp-InputPrompt:has-text('[*]')"
    try:
        page.locator(busy).first.wait_for(timeout=5000)
    except Exception:  # the cells may already have finished
        pass
    page.wait_for_function(
        f"() => !Array.from(document.querySelectorAll(\"{NOTEBOOK} .jp-InputPrompt\"))"
        ".some(p => p.textContent.includes('*'))",
        timeout=timeout * 1000,
    )
    wait_for_kernel(page, timeout)


def code_cell(page, text: str, last: bool = False):
    """The code cell whose source contains ``text`` (the first one, or the last one)."""
    cells = page.locator(f"{NOTEBOOK} .jp-CodeCell").filter(has=page.locator(".cm-content", has_text=text))
    return cells.last if last else cells.first


def select_cell(cell) -> None:
    cell.locator(".jp-InputPrompt").click()


def replace_source(page, cell, source: str) -> None:
    """Click into the cell's editor, select its text and type ``source`` instead."""
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(source)


def save(page) -> None:
    page.keyboard.press("Escape")
    page.keyboard.press("Control+S")
    page.locator(".lm-TabBar-tab.lm-mod-current.jp-mod-dirty").wait_for(state="detached", timeout=30_000)


def outputs_text(cell) -> str:
    return cell.locator(".jp-OutputArea").inner_text()


def saved_errors(path: Path) -> list[str]:
    """Error outputs stored in a saved notebook (ename: evalue per error)."""
    notebook = json.loads(path.read_text())
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in notebook["cells"] for o in c.get("outputs", [])
            if o.get("output_type") == "error"]
