"""Real-browser fixtures: JupyterLab on loopback with an empty token, Debian's Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-results"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory) -> Iterator[str]:
    """A Jupyter server (JupyterLab + Notebook 7) serving a copy of notebooks/."""
    root = tmp_path_factory.mktemp("notebooks")
    shutil.copy(ROOT / "notebooks" / "tour.ipynb", root / "tour.ipynb")
    port = _free_port()
    log = open(ARTIFACTS / "jupyter.log", "w")  # noqa: SIM115 - closed at teardown
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / ".jupyter")}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
            f"--port={port}", "--ServerApp.token=", "--ServerApp.password=",
            "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True", "--JupyterNotebookApp.expose_app_in_browser=True",
                "--allow-root",
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=2)
            break
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter exited; see {ARTIFACTS / 'jupyter.log'}") from None
            time.sleep(0.5)
    else:
        process.kill()
        raise RuntimeError("jupyter did not start within 90 s")
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "Debian's chromium is not installed: `apt-get install chromium` (make test does it)."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda msg: messages.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda error: messages.append(f"pageerror: {error}"))
    yield page
    page.screenshot(path=str(ARTIFACTS / f"last-page-{request.node.name}.png"), full_page=True)
    (ARTIFACTS / "console.log").open("a").write("\n".join(messages) + "\n")
    context.close()


ARTIFACTS.mkdir(exist_ok=True)
