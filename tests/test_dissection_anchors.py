"""The paper's upsampling (upsample="receptive_field"): each map position at its receptive
field's centre, bilinear between centres, border values past them; checked against a
separable np.interp written here, and end to end against the straightforward dissection."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import cnnvis_widget as cv
from cnnvis_widget.dissection.anchors import FieldAnchors, anchored_resize
from cnnvis_widget.receptive_field import receptive_field
from tests.support_concepts import MASK, TABLE, TinyConcepts, tiny_cnn
from tests.test_dissection import preprocess
from tests.test_dissection_tally import straightforward_iou


def interp_resize(maps: np.ndarray, centres_y, centres_x, size, input_size) -> np.ndarray:
    """(N, h, w) -> (N, H', W'): label pixel j sits at input coordinate (j + 0.5) * H / H' -
    0.5; values interpolated linearly between the centres along y, then x (np.interp holds
    the end values past them)."""
    ys = (np.arange(size[0]) + 0.5) * input_size[0] / size[0] - 0.5
    xs = (np.arange(size[1]) + 0.5) * input_size[1] / size[1] - 0.5
    along_y = np.stack(
        [[np.interp(ys, centres_y, column) for column in m.T] for m in maps]
    ).transpose(0, 2, 1)  # (N, H', w)
    return np.stack([[np.interp(xs, centres_x, row) for row in m] for m in along_y])


def test_each_position_sits_at_its_field_centre():
    conv = nn.Conv2d(1, 2, 3, stride=2)  # 11 x 11 -> 5 x 5, centres at 1, 3, 5, 7, 9
    model = nn.Sequential(conv, nn.ReLU())
    field = receptive_field(model, "1", torch.zeros(1, 1, 11, 11))
    anchors = FieldAnchors.of(field)
    assert anchors.first == (1.0, 1.0) and anchors.jump == (2.0, 2.0)
    maps = torch.randn(3, 2, 5, 5)
    resized = anchored_resize(maps, anchors, (11, 11))
    # at a centre, the position's own value
    torch.testing.assert_close(resized[:, :, 3, 5], maps[:, :, 1, 2])
    centres = np.arange(5) * 2 + 1.0
    for size in [(11, 11), (7, 9), (22, 22)]:
        expected = interp_resize(maps.reshape(-1, 5, 5).numpy(), centres, centres, size, (11, 11))
        got = anchored_resize(maps, anchors, size).reshape(-1, *size).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_dissect_with_the_papers_upsampling_equals_the_straightforward_computation():
    data = TinyConcepts(12)
    model = tiny_cnn(2)
    result = cv.dissect(model, data, ["3"], q=0.02, batch_size=5, progress=False,
                        preprocess=preprocess(), upsample="receptive_field")  # fmt: skip
    plain = cv.dissect(model, data, ["3"], q=0.02, batch_size=5, progress=False,
                       preprocess=preprocess())  # fmt: skip
    acts = torch.cat([
        cv.activations(model, preprocess()(data[i][0]), ["3"])["3"] for i in range(len(data))
    ]).double()  # fmt: skip
    thresholds = result.layers["3"].thresholds.numpy()
    # layer "3": conv k3 s1 p1, then conv k3 s2 p1: position i sees [2i - 2, 2i + 3), centre 2i
    centres = np.arange(16) * 2.0
    maps = interp_resize(acts.reshape(-1, 16, 16).numpy(), centres, centres, (MASK, MASK), (32, 32))
    masks = maps.reshape(len(data), 8, MASK, MASK) > thresholds[None, :, None, None]
    expected = straightforward_iou(masks, [data[i][1] for i in range(len(data))], table=TABLE)
    np.testing.assert_allclose(result.iou("3").numpy(), expected, atol=1e-6)
    assert not np.allclose(plain.iou("3").numpy(), expected, atol=1e-6)  # it is another resize
