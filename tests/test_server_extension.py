"""The Jupyter server extension: kernel websockets get TCP_NODELAY, nothing else changes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

import cnnvis_widget_server as ext

ROOT = Path(__file__).resolve().parents[1]


class FakeHandler:
    def __init__(self) -> None:
        self.nodelay: bool | None = None

    def set_nodelay(self, value: bool) -> None:
        self.nodelay = value


class FakeConnection:
    """Stands for jupyter_server's connection classes: ``websocket_handler`` + ``connect``."""

    connected_with: ClassVar[list[bool | None]] = []

    def __init__(self, handler: FakeHandler) -> None:
        self.websocket_handler = handler

    def connect(self) -> str:
        FakeConnection.connected_with.append(self.websocket_handler.nodelay)
        return "connected"


def test_wrapped_connection_sets_nodelay_before_connecting() -> None:
    wrapped = ext.without_nagle(FakeConnection)
    assert issubclass(wrapped, FakeConnection)
    handler = FakeHandler()
    assert wrapped(handler).connect() == "connected"  # the base's result is passed on
    assert FakeConnection.connected_with[-1] is True  # set before the base connected
    assert ext.without_nagle(wrapped) is wrapped  # wrapping twice changes nothing


def test_loading_wraps_the_configured_class_and_keeps_it_a_subclass() -> None:
    settings = {ext.SETTING: FakeConnection}
    messages: list[str] = []
    log = SimpleNamespace(info=messages.append, warning=messages.append)
    serverapp = SimpleNamespace(web_app=SimpleNamespace(settings=settings), log=log)
    ext._load_jupyter_server_extension(serverapp)
    assert settings[ext.SETTING] is not FakeConnection
    assert issubclass(settings[ext.SETTING], FakeConnection)
    ext._load_jupyter_server_extension(serverapp)  # a second load does not wrap again
    assert settings[ext.SETTING].__mro__[1] is FakeConnection


def test_real_connection_class_and_enabling_config() -> None:
    channels = pytest.importorskip("jupyter_server.services.kernels.connection.channels")
    base = channels.ZMQChannelsWebsocketConnection
    wrapped = ext.without_nagle(base)
    assert issubclass(wrapped, base) and "connect" in vars(wrapped)
    config = ROOT / "jupyter-config" / "jupyter_server_config.d" / "cnnvis_widget_server.json"
    enabled = json.loads(config.read_text())["ServerApp"]["jpserver_extensions"]
    assert enabled == {"cnnvis_widget_server": True}
    assert ext._jupyter_server_extension_points() == [{"module": "cnnvis_widget_server"}]
