"""Kernel round trip through Jupyter server, with and without cnnvis_widget_server (the
extension that turns off Nagle's algorithm on kernel websockets).

    .venv/bin/python benchmarks/kernel_roundtrip.py [--repeats 30]

Starts two Jupyter servers on loopback (one with the extension disabled), a kernel in each,
and sends the same trivial cell (``1+1``) over the kernel websocket (JSON protocol), alternating
between the two. Prints the median and 90th percentile milliseconds to the first reply and to
the kernel's idle status (five messages), and the ratio of the medians, all from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import ExitStack

from tornado.websocket import WebSocketClientConnection, websocket_connect


def start_server(stack: ExitStack, extension: bool) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = stack.enter_context(tempfile.TemporaryDirectory())
    args = [
        sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1",
        f"--port={port}", "--ServerApp.token=", "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root}", "--allow-root",
    ]  # fmt: skip
    if not extension:
        args.append("--ServerApp.jpserver_extensions={'cnnvis_widget_server': False}")
    log = stack.enter_context(open(f"{root}/server.log", "w"))  # noqa: SIM115
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(process.terminate)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=2)
            return url
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("jupyter server did not start")


async def connect(url: str) -> WebSocketClientConnection:
    request = urllib.request.Request(
        f"{url}/api/kernels",
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    kernel = json.load(urllib.request.urlopen(request))["id"]
    ws_url = url.replace("http", "ws") + f"/api/kernels/{kernel}/channels?session_id={uuid.uuid4()}"
    return await websocket_connect(ws_url)


async def round_trip(ws: WebSocketClientConnection, code: str = "1+1") -> tuple[float, float]:
    """Milliseconds to the first message answering ``code`` and to the kernel's idle status."""
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "username": "", "session": "bench", "date": "",
              "msg_type": "execute_request", "version": "5.3"}  # fmt: skip
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {},
               "allow_stdin": False}  # fmt: skip
    message = {"header": header, "parent_header": {}, "metadata": {}, "content": content,
               "channel": "shell", "buffers": []}  # fmt: skip
    start = time.perf_counter()
    first: float | None = None
    await ws.write_message(json.dumps(message))
    while True:
        raw = await ws.read_message()
        if raw is None:
            raise RuntimeError("websocket closed")
        reply = json.loads(raw)
        if reply.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        now = 1000 * (time.perf_counter() - start)
        first = now if first is None else first
        if reply["msg_type"] == "status" and reply["content"]["execution_state"] == "idle":
            return first, now


async def main(repeats: int) -> None:
    with ExitStack() as stack:
        urls = {"with extension": start_server(stack, True), "without": start_server(stack, False)}
        sockets = {name: await connect(url) for name, url in urls.items()}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in urls}
        for ws in sockets.values():
            for _ in range(3):  # warm-up
                await round_trip(ws)
        for _ in range(repeats):
            for name, ws in sockets.items():
                times[name].append(await round_trip(ws))
                await asyncio.sleep(0.02)
        print(
            f"{'server':<16} {'first reply ms (median / p90)':>30} {'idle ms (median / p90)':>26}"
        )
        medians = {}
        for name, samples in times.items():
            first = sorted(s[0] for s in samples)
            idle = sorted(s[1] for s in samples)
            p90 = int(0.9 * (len(samples) - 1))
            medians[name] = statistics.median(idle)
            print(
                f"{name:<16} {statistics.median(first):>17.1f} / {first[p90]:<10.1f}"
                f" {medians[name]:>15.1f} / {idle[p90]:<8.1f}"
            )
        print(
            f"idle round trip, without / with: {medians['without'] / medians['with extension']:.1f}x"
        )
        for ws in sockets.values():
            ws.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    asyncio.run(main(parser.parse_args().repeats))
