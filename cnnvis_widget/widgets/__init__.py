"""anywidget classes: traits and message routing only; the math lives in the engine."""

from .explorer import Explorer

__all__ = ["Explorer"]
