"""Tiny seeded models and helpers shared by the tests (the widget's public surface: messages
the browser sends, updates the kernel sends, and forward passes of the user's model)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class TinyCNN(nn.Module):
    """T1: conv3x3(3->8) - ReLU - maxpool2 - conv3x3(8->16) - ReLU - GAP - linear(16->10)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu2 = nn.ReLU(inplace=inplace)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu1(self.conv1(x)))
        x = self.relu2(self.conv2(x))
        return self.fc(self.gap(x).flatten(1))


class TinyResidual(nn.Module):
    """T3: T1 with one identity-skip block; one in-place ReLU module reused three times and
    BatchNorm + Dropout so train / eval mode matters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.block_conv = nn.Conv2d(8, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.block_conv(x) + x)
        x = self.relu(self.conv2(x))
        return self.fc(self.drop(self.gap(x).flatten(1)))


def seeded(model: nn.Module, seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    for parameter in model.parameters():
        nn.init.normal_(parameter, std=0.3)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.to(dtype).eval()


def hook_count(model: nn.Module) -> int:
    """Forward, pre-forward and backward hooks registered on any submodule."""
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


class BackwardSpy(nn.Module):
    """Identity whose backward pass is counted."""

    def __init__(self) -> None:
        super().__init__()
        self.backward_calls = 0
        spy = self

        class Identity(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):  # type: ignore[no-untyped-def]
                return x.view_as(x)

            @staticmethod
            def backward(ctx, grad):  # type: ignore[no-untyped-def]
                spy.backward_calls += 1
                return grad

        self.fn = Identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn.apply(x)


def reused_relu_layers(
    r: nn.Module, x: torch.Tensor, targets: list[int]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """relu@1 (block output) and relu (= relu@2, after conv2) of T3 by hand, with gradients."""
    h = torch.relu(r.bn1(r.conv1(x)))
    block = torch.relu(r.block_conv(h) + h).detach().requires_grad_(True)
    last = torch.relu(r.conv2(block))
    logits = r.fc(r.gap(last).flatten(1))
    score = logits.gather(1, torch.tensor(targets).view(-1, 1)).sum()
    g_block, g_last = torch.autograd.grad(score, [block, last])
    return {"relu@1": (block.detach(), g_block), "relu": (last.detach(), g_last)}


def resnet18_with_batch_norm_statistics(num_classes: int = 1000) -> nn.Module:
    """A seeded torchvision ResNet-18 in eval mode whose batch norms have non-trivial running
    statistics and affine parameters, so that folding them into the convs is really tested."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=num_classes).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model


def send_from_browser(widget: Any, content: dict[str, Any], buffers: Sequence[bytes] = ()) -> None:
    """A custom message as the browser sends it (``model.send(content, undefined, buffers)``),
    delivered through the widget's comm message handler as ipywidgets delivers it."""
    message = {
        "content": {"data": {"method": "custom", "content": content}},
        "buffers": list(buffers),
    }
    widget._handle_msg(message)


def sent_to_browser(widget: Any, delay: float = 0.0) -> list[dict[str, Any]]:
    """Every state update the widget sends over its comm from now on (``{"method": "update",
    "state", "buffer_paths", "buffers"}``), in order; ``delay`` seconds per message simulate a
    slow connection."""
    sent: list[dict[str, Any]] = []
    send = widget.comm.send

    def recording_send(data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        if delay:
            time.sleep(delay)
        if isinstance(data, dict) and data.get("method") == "update":
            sent.append({**data, "buffers": list(buffers or [])})
        send(data=data, metadata=metadata, buffers=buffers)

    widget.comm.send = recording_send
    return sent


@contextmanager
def forwards_of(module: nn.Module) -> Iterator[list[int]]:
    """Counts the forward passes of ``module`` (a hook of the user's, which every method honours)
    while the block runs; the hook is removed after it."""
    calls: list[int] = []
    handle = module.register_forward_hook(lambda *_: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()
