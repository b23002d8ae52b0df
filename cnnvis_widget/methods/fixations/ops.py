"""CNN Fixations' op tables: which torch modules, functions and tensor methods the backward
walk knows, grouped by how it moves points through them (shape-preserving pass-through,
reshape, addition, gating multiplication, concatenation, reduction), plus the node
classifiers and the argument binder the walk uses to read an fx node.

Everything here is data or a pure function of an fx ``Node``; the rules themselves live in
:mod:`.steps` (tensor arithmetic) and :mod:`.rules` (rules that need the recorded graph).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx import Node

#: Extra functions (for instance your own ``torch.fx.wrap``-ed element-wise helpers) that CNN
#: Fixations may pass points straight through, like ReLU. Add to it; names are compared by object.
#: The package's entry points read it as ``cnnvis_widget.methods.fixations.PASSTHROUGH_FUNCTIONS``
#: at call time and hand it to the walk, so rebinding that name works too.
PASSTHROUGH_FUNCTIONS: set[Callable[..., Any]] = set()

SUPPORTED = (
    "Linear, Conv2d (stride, padding, dilation, groups), max / average / adaptive pooling, "
    "flatten / view / reshape / squeeze / unsqueeze, add (residual), torch.cat, constant padding, "
    "basic indexing, mean / sum over dimensions, gating multiplication, and shape-preserving "
    "layers (ReLU and other activations, BatchNorm and other norms, Dropout, Identity)"
)

ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Softsign,
    nn.Threshold,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.dropout._DropoutNd,
    nn.Identity,
)
ELEMENTWISE_FUNCTIONS: set[Any] = {
    F.relu,
    F.relu_,
    torch.relu,
    torch.relu_,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.selu,
    F.celu,
    F.gelu,
    F.silu,
    F.mish,
    F.hardswish,
    F.hardsigmoid,
    F.hardtanh,
    F.softplus,
    F.sigmoid,
    F.tanh,
    torch.sigmoid,
    torch.tanh,
    F.dropout,
    F.dropout2d,
    F.alpha_dropout,
    F.batch_norm,
    F.group_norm,
    F.instance_norm,
    F.local_response_norm,
    torch.clone,
    torch.clamp,
    torch.clip,
}
try:  # EfficientNet / ConvNeXt: identity in eval mode
    from torchvision.ops import stochastic_depth

    ELEMENTWISE_FUNCTIONS.add(stochastic_depth)
except ImportError:  # pragma: no cover - torchvision is a dependency
    pass
ELEMENTWISE_METHODS = {
    "relu",
    "relu_",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "tanh_",
    "clamp",
    "clamp_",
    "clamp_min",
    "clamp_min_",
    "clip",
    "contiguous",
    "clone",
    "detach",
    "float",
    "double",
    "half",
    "to",
    "type_as",
}
RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "view_as", "reshape_as"}
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
MUL_FUNCTIONS = {operator.mul, operator.imul, torch.mul}
SCALAR_FUNCTIONS = {operator.sub, operator.isub, operator.truediv, operator.itruediv, torch.sub}
CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax}
REDUCE_METHODS = {"mean", "sum", "amax"}


def is_reshape(node: Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` is one of the reshapes above (``modules``: the graph's named modules)."""
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), nn.Flatten | nn.Unflatten)
    if node.op == "call_function":
        return node.target in RESHAPE_FUNCTIONS
    return node.op == "call_method" and node.target in RESHAPE_METHODS


def is_passthrough(
    node: Node, modules: dict[str, nn.Module], extra: AbstractSet[Callable[..., Any]]
) -> bool:
    """Whether ``node`` is a shape-preserving op that points pass straight through: the
    element-wise tables above, or a function in ``extra`` (the user's ``PASSTHROUGH_FUNCTIONS``)."""
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), ELEMENTWISE_MODULES)
    if node.op == "call_function":
        return node.target in ELEMENTWISE_FUNCTIONS or node.target in extra
    return node.op == "call_method" and node.target in ELEMENTWISE_METHODS


def bind(
    args: Sequence[Any], kwargs: dict[str, Any], names: Sequence[str], defaults: dict[str, Any]
) -> dict[str, Any]:
    """An fx node's ``args`` / ``kwargs`` by parameter name; absent ones from ``defaults`` (or
    ``None``)."""
    bound = dict(zip(names, args, strict=False))
    bound.update({k: v for k, v in kwargs.items()})
    for name in names:
        bound.setdefault(name, defaults.get(name))
    return bound
