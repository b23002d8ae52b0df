"""`make demo` as a new user runs it: the output is the URL to open and nothing alarming, and
that URL serves the tour notebook."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 90
QUIET_S = 5  # after the server answers, how long more output is read
ALARMING = re.compile(r"yarn|Traceback|Error|error|\[E |\[C |\[W ")

pytestmark = pytest.mark.ui


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_for(process: subprocess.Popen[str], seconds: float, lines: list[str]) -> None:
    """Append the lines ``process`` prints within ``seconds`` (stdout and stderr together)."""
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    deadline = time.time() + seconds
    while time.time() < deadline and process.poll() is None:
        line = process.stdout.readline()
        if line:
            lines.append(line.rstrip("\n"))
        else:
            time.sleep(0.1)


def test_make_demo_prints_the_url_and_nothing_alarming() -> None:
    port = _free_port()
    process = subprocess.Popen(
        ["make", "-s", "demo", f"PORT={port}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the whole group (make, jupyter, kernels) is stopped below
    )
    lines: list[str] = []
    try:
        url = None
        deadline = time.time() + STARTUP_S
        while url is None and time.time() < deadline and process.poll() is None:
            _read_for(process, 1, lines)
            found = re.search(r"http://127\.0\.0\.1:\d+/\S+token=[0-9a-f]+", "\n".join(lines))
            if found:
                url = found.group(0)
        assert url is not None, f"no URL printed within {STARTUP_S} s:\n" + "\n".join(lines)
        assert f":{port}/lab/tree/notebooks/tour.ipynb" in url
        # The URL printed is the one served (the server answers it once it is up).
        status = None
        while status is None and time.time() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    status = response.status
            except OSError:
                time.sleep(0.5)
        assert status == 200, "\n".join(lines)
        _read_for(process, QUIET_S, lines)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    alarming = [line for line in lines if ALARMING.search(line)]
    assert alarming == [], "start-up output:\n" + "\n".join(lines)
    assert max(len(line) for line in lines) < 300, "a minified script in the output"
