"""The measured memory layout: one of the two, measured once per key, same results."""

from __future__ import annotations

import torch

from cnnvis_widget.layout import LAYOUTS, faster_layout


def test_layout_is_measured_once_per_key_and_grad_mode() -> None:
    conv = torch.nn.Conv2d(3, 8, 3).eval()
    calls: list[torch.memory_format] = []

    def run(probe: torch.Tensor) -> torch.Tensor:
        calls.append(
            torch.channels_last
            if probe.is_contiguous(memory_format=torch.channels_last) and not probe.is_contiguous()
            else torch.contiguous_format
        )
        return conv(probe)

    x = torch.randn(2, 3, 16, 16)
    chosen = faster_layout(("test", 1), x, run)
    assert chosen in LAYOUTS
    assert calls == [torch.channels_last, torch.contiguous_format] * 2  # warm-ups, then timed
    assert faster_layout(("test", 1), x, run) == chosen and len(calls) == 4  # cached
    with torch.no_grad():
        faster_layout(("test", 1), x, run)  # forward-only passes are measured on their own
    assert len(calls) == 8
    # Either layout computes the same function.
    torch.testing.assert_close(
        conv(x.contiguous(memory_format=torch.channels_last)), conv(x), rtol=1e-5, atol=1e-6
    )
