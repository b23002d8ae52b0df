"""Trait constructors shared by the Explorer and its panels."""

from __future__ import annotations

from typing import Any

import traitlets


def optional_dict() -> Any:
    """A synced dict trait that may be None (a payload, a job state, a message)."""
    return traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
