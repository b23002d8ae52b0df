"""What a panel of the Explorer is, and what it may use of the Explorer (its :class:`Host`).

The Explorer is a shell (image, predictions, layer tree, filter grid, selection) that holds
panels: the overlay, the comparison, the synthesis panel. A panel owns its traits (declared on
a ``traitlets.HasTraits`` class the Explorer lists among its bases, because anywidget syncs
the traits of one widget class), its state, its actions and its background jobs (one
:class:`~cnnvis_widget.widgets.channel.JobChannel` each). See docs/architecture.md, "Adding a
panel".
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import traitlets

from ..protocol import Message
from ..session import ExplorerSession
from .channel import JobChannel, Update

T = TypeVar("T", bound=traitlets.HasTraits)
Handler = Callable[[dict[str, Any]], None]
"""A traitlets observer: receives the change dict (``name``, ``old``, ``new``)."""


@dataclass
class Change:
    """Trait values to show at once, and jobs to start right after (a long map, computed in
    the background, starts only once the request that asked for it is shown)."""

    traits: Update = field(default_factory=dict)
    then: list[Callable[[], None]] = field(default_factory=list)

    def merge(self, other: Change) -> Change:
        return Change({**self.traits, **other.traits}, [*self.then, *other.then])


class Host(Protocol):
    """The part of the Explorer a panel uses: the session (model + image), the selection,
    the message banner, and the publishing services its job channels need."""

    session: ExplorerSession
    selected_layer: str
    selected_channel: int
    selected_class: int
    message: Message | None
    publish_lock: threading.RLock
    main_loop: asyncio.AbstractEventLoop | None

    def applying(self) -> AbstractContextManager[None]: ...

    def publishing(self) -> AbstractContextManager[None]: ...

    def assign(self, update: Update) -> None: ...

    def show(self, change: Change) -> None: ...

    def watch(self, names: list[str], handler: Handler) -> None: ...


def traits_of(host: Host, traits: type[T]) -> T:
    """``host`` as the trait declarations ``traits`` (the widget lists them among its bases)."""
    if not isinstance(host, traits):
        raise TypeError(
            f"{type(host).__name__} does not declare {traits.__name__}: add it to the widget "
            "class's bases (docs/architecture.md, 'Adding a panel')."
        )
    return host


class Panel:
    """Base of the Explorer's panels, built as ``PanelClass(host)`` by the Explorer (one per
    class in ``Explorer.panel_types``). ``messages``: the custom message ``type`` values the
    panel handles (:meth:`on_message`); the ``on_*`` hooks return what the panel shows when
    the shell's selection changes (computed, not yet shown: the shell shows every panel's
    change and its own as one update, or none of them if one fails)."""

    messages: ClassVar[tuple[str, ...]] = ()

    def __init__(self, host: Host) -> None:
        self.host = host

    def channels(self) -> list[JobChannel]:
        """The panel's background-job channels (waited for, cancelled by job trait)."""
        return []

    def on_message(self, content: dict[str, Any]) -> None:
        """A custom message from the browser whose ``type`` is in :attr:`messages`."""

    def on_image(self, target: int) -> Change:
        """A new image is about to be shown, with class ``target`` selected."""
        return Change()

    def on_class(self, target: int) -> Change:
        """Class ``target`` was selected."""
        return Change()

    def on_layer(self, layer: str) -> Change:
        """``layer`` was selected."""
        return Change()
