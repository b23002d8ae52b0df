"""torch.fx tracing that other threads cannot notice.

``torch.fx.Tracer.trace`` patches ``nn.Module.__call__`` and ``nn.Module.__getattr__`` for the
whole process while it runs, so that calls of submodules become graph nodes. A forward pass
that another thread runs meanwhile (the user's notebook cell, a widget job) goes through the
same patched methods and fails ("module is not installed as a submodule"); two traces that
overlap can restore each other's patch and leave ``__call__`` patched for good.

:class:`ThreadSafeTracer` keeps the patch but makes it transparent to every thread but the
one tracing: a call or attribute read from another thread goes straight to the original
method. Traces run one at a time (a process-wide lock), so patches never nest. Always trace a
view or a copy of the user's model (``eval_view``), never the model itself: tracing stores
tensor constants as ``_tensor_constant*`` attributes on the traced root.
"""

from __future__ import annotations

import threading
from typing import Any

from torch import fx, nn

_TRACE_LOCK = threading.RLock()
"""Held for the whole of every trace: fx's patches of ``nn.Module`` never overlap."""


class ThreadSafeTracer(fx.Tracer):
    """A ``torch.fx.Tracer`` whose process-wide patches act only in the thread that traces."""

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        with _TRACE_LOCK:
            self._owner = threading.get_ident()
            return super().trace(root, concrete_args)

    def _other_thread(self) -> bool:
        return threading.get_ident() != getattr(self, "_owner", None)

    def call_module(
        self,
        m: nn.Module,
        forward: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if self._other_thread():
            return forward(*args, **kwargs)  # the original ``Module.__call__``
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if self._other_thread():
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)


def trace(module: nn.Module, tracer: ThreadSafeTracer | None = None) -> fx.GraphModule:
    """``torch.fx.symbolic_trace(module)`` without disturbing other threads (see the module
    docstring). ``module`` should be a view or copy: constants are stored on it."""
    tracer = tracer or ThreadSafeTracer()
    graph = tracer.trace(module)
    name = module.__class__.__name__
    return fx.GraphModule(tracer.root, graph, name)
