"""Jupyter server extension of cnnvis-widget: kernel websockets send without Nagle's delay.

Jupyter server relays every kernel message to the browser over a websocket that tornado
leaves with Nagle's algorithm on. A message written while the previous one is not yet
acknowledged waits for the browser's delayed ACK (40-200 ms on Linux), so a widget's reply
that the kernel sends within milliseconds reaches the page 0.1-0.3 s later (measured in
JupyterLab: a method pick answered in 5 ms in the kernel was shown after 126 ms). Widgets
that stream results (the explorer's partial maps, live feature visualizations) pay this on
every frame.

Loaded by Jupyter server (JupyterLab, Notebook 7) when enabled, which ``pip install`` does
through ``etc/jupyter/jupyter_server_config.d/cnnvis_widget_server.json``; turn it off with
``jupyter server extension disable cnnvis_widget_server``. It wraps the configured kernel
websocket connection class (the default ZMQ one, a gateway's, or a user's) in a subclass that
sets ``TCP_NODELAY`` on the websocket when the connection opens; nothing else changes. VS Code
talks to kernels without Jupyter server and is unaffected. Kept apart from ``cnnvis_widget``
so that the server does not import torch.
"""

from __future__ import annotations

from typing import Any

SETTING = "kernel_websocket_connection_class"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "cnnvis_widget_server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    settings = serverapp.web_app.settings
    base = settings.get(SETTING)
    if base is None:
        serverapp.log.warning("cnnvis_widget_server: no %s in the server settings", SETTING)
        return
    settings[SETTING] = without_nagle(base)
    serverapp.log.info("cnnvis_widget_server: kernel websockets send without Nagle's delay")


def without_nagle(base: type) -> type:
    """``base`` (a kernel websocket connection class) with ``TCP_NODELAY`` set on its
    websocket before it connects; ``base`` itself if it already does."""
    if getattr(base, "_sets_nodelay", False):
        return base

    class NoDelayConnection(base):
        _sets_nodelay = True

        def connect(self) -> Any:
            self.websocket_handler.set_nodelay(True)
            return super().connect()

    NoDelayConnection.__name__ = NoDelayConnection.__qualname__ = f"NoDelay{base.__name__}"
    return NoDelayConnection
