"""An eval-mode view of the user's model that every method runs on, so the model itself is
never changed, not even for a moment.

Another thread (the user's notebook cell, a widget job) may run or train the same model while
a method computes. Switching the model to eval mode, freezing its parameters or adding hooks
to it, even if undone afterwards, would be seen by that thread. Instead every method builds a
*view*: a second tree of module objects, one per user module (a module used twice stays one
view), whose

- ``training`` flag is ``False`` (batch norm uses its running statistics and does not update
  them; dropout is off);
- parameters are the user's tensors, detached: the same storage, so the view computes with the
  current weights (also after in-place updates), but without ``requires_grad``, so backward
  passes compute input gradients only and never touch ``.grad``;
- buffers are the user's tensors (read, never written: eval mode does not update them);
- hook dictionaries are copies: the user's own hooks (pruning masks, weight norm, anything
  registered with ``register_forward_hook`` / ``_pre_hook``) take part in every answer, and a
  hook a method adds to the view never reaches the user's module.

Building a view costs one shallow object copy per module (about 1 ms for ResNet-50), so every
call builds its own.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn.modules import module as module_internals
from torch.nn.utils import parametrize

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
"""Per-module hook registries (all ``OrderedDict`` / ``dict``); each view gets its own copy."""

_RUNNING_HOOKS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)
"""The registries whose hooks change what a forward or backward pass computes."""

_GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)


def eval_view(module: nn.Module) -> nn.Module:
    """An eval-mode, frozen view of ``module`` (see the module docstring): same names
    (``named_modules()``), same function as ``module`` in eval mode with the user's hooks and
    parametrizations, sharing every tensor; changing the view never changes ``module``.
    A view of a view is a new view of the same tensors."""
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"expected a torch.nn.Module; got {type(module).__name__}. Pass the model itself "
            "(or a bundle from cv.load_model)."
        )
    if isinstance(module, torch.jit.ScriptModule):
        raise TypeError(
            f"{type(module).__name__} is a TorchScript module; its layers and hooks cannot be "
            "opened. Pass the Python model it was scripted or traced from."
        )
    compiled = getattr(module, "_orig_mod", None)
    if isinstance(compiled, nn.Module) and type(module).__name__ == "OptimizedModule":
        # torch.compile's wrapper runs the original module object itself: view that one.
        module = compiled
    return _view(module, {})


def _view(module: nn.Module, memo: dict[int, nn.Module]) -> nn.Module:
    seen = memo.get(id(module))
    if seen is not None:
        return seen
    cls = type(module)
    view = cls.__new__(cls)
    memo[id(module)] = view
    state = dict(module.__dict__)
    for name in _HOOK_DICTS:
        if name in state:
            state[name] = type(state[name])(state[name])
    state["_parameters"] = {
        name: None if p is None else _frozen(p) for name, p in module._parameters.items()
    }
    state["_buffers"] = dict(module._buffers)
    state["_non_persistent_buffers_set"] = set(module._non_persistent_buffers_set)
    state["_modules"] = {
        name: None if child is None else _view(child, memo)
        for name, child in module._modules.items()
    }
    state["training"] = False
    view.__dict__.update(state)
    return view


def _frozen(parameter: torch.Tensor) -> nn.Parameter:
    """The same storage (and version counter) as ``parameter``, without ``requires_grad``."""
    if isinstance(parameter, nn.Parameter) and not parameter.requires_grad:
        return parameter
    return nn.Parameter(parameter.detach(), requires_grad=False)


def user_hooks(module: nn.Module) -> list[str]:
    """Where ``module`` computes with more than its modules' ``forward``: names of submodules
    carrying forward / backward hooks or parametrizations (pruning masks, weight norm,
    spectral norm, ...), and ``"<global>"`` when module hooks are registered process-wide.
    Empty when the model is plain. Paths that rebuild the network (the fast stand-ins) step
    aside when this is not empty."""
    found = []
    for name, sub in module.named_modules():
        if parametrize.is_parametrized(sub) or any(
            getattr(sub, registry, None) for registry in _RUNNING_HOOKS
        ):
            found.append(name or "<model>")
    if any(getattr(module_internals, registry, None) for registry in _GLOBAL_HOOKS):
        found.append("<global>")
    return found


F = TypeVar("F", bound=Callable[..., Any])


def engine_call(function: F) -> F:
    """Wrap a public engine function (``attribute``, the synthesis functions, the scores):

    - it runs outside ``torch.inference_mode()`` (gradient methods and synthesis need autograd,
      which inference mode switches off; the caller's mode is back when it returns), with
      every tensor argument made in inference mode copied into a normal tensor that autograd
      can record;
    - autograd's "modified by an inplace operation" error, which comes when another thread
      changes the model's weights in place (an optimizer step) while the call backpropagates
      through them (the view shares their storage), is turned into a message that says so and
      names the fixes."""

    def normal(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_inference():
            return value.clone()
        return value

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except RuntimeError as error:
            if "modified by an inplace operation" not in str(error):
                raise
            raise RuntimeError(
                f"{function.__name__}: the model's weights were changed in place while the call "
                "was computing with them (an optimizer step in another thread?), so its "
                "gradients would mix two models. Run it between training steps, or on a "
                "snapshot: copy.deepcopy(model)."
            ) from error

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_inference_mode_enabled() and not any(
            isinstance(v, torch.Tensor) and v.is_inference() for v in (*args, *kwargs.values())
        ):
            return call(*args, **kwargs)
        with torch.inference_mode(False):
            return call(*(normal(v) for v in args), **{k: normal(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


def hook_dicts_of(module: nn.Module) -> dict[str, Any]:
    """The hook registries of one module by name (for tests: what a call must leave as found)."""
    return {
        name: OrderedDict(getattr(module, name)) for name in _HOOK_DICTS if hasattr(module, name)
    }
