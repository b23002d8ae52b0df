"""cv.datasets.an8flower: synthetic flowers whose class is one part's colour, with that part's
mask (Oramas et al., ICLR 2019), and cv.load_model("flower_cnn") trained on them."""

from __future__ import annotations

import colorsys
import hashlib
import json

import numpy as np
import pytest
import torch

import cnnvis_widget as cv
from cnnvis_widget.datasets.an8flower import (
    DOUBLE_COLOURS,
    OTHER_HUES,
    PARTS,
    SINGLE_COLOURS,
    An8Flower,
    an8flower,
    area_under_iou_curve,
    colour_name,
    draw_flower,
    iou_curve,
    pointing_game,
)
from cnnvis_widget.zoo import flower_cnn_double
from cnnvis_widget.zoo.flower_cnn import INFO, WEIGHTS, FlowerCNN

OTHER_PARTS = ("stem", "leaves", "petals")


def rgb(hue: float, s: float = 0.9, v: float = 0.9) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((hue % 360) / 360, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


def image_hash(dataset: An8Flower, index: int) -> str:
    return hashlib.sha256(dataset.render(index)[0].tobytes()).hexdigest()


@pytest.fixture(scope="module")
def single() -> An8Flower:
    return an8flower("test", "single", images_per_class=10)


@pytest.fixture(scope="module")
def double() -> An8Flower:
    return an8flower("test", "double", images_per_class=3)


@pytest.fixture(scope="module")
def bundle() -> cv.ModelBundle:
    return cv.load_model("flower_cnn")


def test_classes_and_items(single: An8Flower, double: An8Flower) -> None:
    assert single.classes == [f"center {name}" for name in SINGLE_COLOURS]
    assert len(double.classes) == 12 and len(set(double.classes)) == 12
    assert double.classes[0] == "center red, leaves yellow"
    assert all(a != b for a, b in double.class_colours)
    assert len(single) == 60 and np.bincount(single.targets).tolist() == [10] * 6
    image, label = single[7]
    assert image.mode == "RGB" and image.size == (112, 112) and label == single.targets[7] == 1
    assert single.mask(7).shape == (112, 112) and single.mask(7).dtype == bool
    small = an8flower("train", size=48, images_per_class=1)
    assert small[0][0].size == (48, 48) and small.mask(0).shape == (48, 48)
    with pytest.raises(ValueError, match="variant"):
        an8flower(variant="triple")
    with pytest.raises(ValueError, match="split"):
        an8flower("val")
    with pytest.raises(ValueError, match="part"):
        an8flower(parts=("center", "petals"))


def test_deterministic_from_the_seed() -> None:
    a, b = an8flower("train", seed=3, images_per_class=2), an8flower("train", seed=3)
    other = an8flower("train", seed=4, images_per_class=2)
    for i in range(len(a)):
        assert image_hash(a, i) == image_hash(b, i)  # size of the split does not matter
        assert np.array_equal(a.mask(i), b.mask(i)) and a.flower(i) == b.flower(i)
        assert image_hash(a, i) != image_hash(other, i)


def test_train_and_test_are_disjoint() -> None:
    train = an8flower("train", images_per_class=40)
    test = an8flower("test", images_per_class=40)
    train_hashes = {image_hash(train, i) for i in range(len(train))}
    test_hashes = {image_hash(test, i) for i in range(len(test))}
    assert len(train_hashes) == len(train) and len(test_hashes) == len(test)
    assert not train_hashes & test_hashes
    # not even one drawing parameter is shared
    train_x = {train.flower(i).x for i in range(len(train))}
    assert not train_x & {test.flower(i).x for i in range(len(test))}


@pytest.mark.parametrize("variant", ["single", "double"])
def test_mask_is_exactly_the_discriminative_part(variant: str) -> None:
    data = an8flower("test", variant, images_per_class=2)
    for i in range(len(data)):
        image, part_map = data.render(i)
        flower, mask = data.flower(i), data.mask(i)
        coloured = np.zeros(mask.shape, dtype=bool)
        for part in data.parts:
            # every pixel of that colour belongs to the part, and the part has only that colour
            own = (image == np.array(flower.colours[part], dtype=np.uint8)).all(-1)
            assert np.array_equal(own, part_map == PARTS[part]) and own.sum() > 20
            coloured |= own
        assert np.array_equal(mask, coloured)
        # the center disk sits at the flower's head
        ys, xs = np.nonzero(part_map == PARTS["center"])
        assert abs(xs.mean() + 0.5 - flower.x * data.size) < 1.5
        assert abs(ys.mean() + 0.5 - flower.y * data.size) < 1.5
        masks = data.part_masks(i)
        assert sum(m.astype(int) for m in masks.values()).max() == 1  # a partition


def test_label_follows_the_part_colour_only(single: An8Flower, double: An8Flower) -> None:
    rng = np.random.default_rng(0)
    for i in range(len(single)):
        flower = single.flower(i)
        assert single.class_of(flower) == single.targets[i]
        for k, hue in enumerate(SINGLE_COLOURS.values()):
            assert single.class_of(flower.recoloured(center=rgb(hue))) == k
        for part in OTHER_PARTS:
            for hue in SINGLE_COLOURS.values():
                changed = flower.recoloured(**{part: rgb(hue + rng.uniform(-5, 5))})
                assert single.class_of(changed) == single.targets[i]
        assert single.class_of(flower.recoloured(center=(128, 128, 128))) is None
    names = list(DOUBLE_COLOURS)
    for i in range(len(double)):
        flower = double.flower(i)
        assert double.class_of(flower) == double.targets[i]
        center, leaves = double.class_colours[double.targets[i]]
        new = next(n for n in names if n not in (center, leaves))
        moved = double.class_of(flower.recoloured(leaves=rgb(DOUBLE_COLOURS[new])))
        assert moved == double.class_colours.index((center, new))
        for part in ("stem", "petals"):
            changed = flower.recoloured(**{part: rgb(DOUBLE_COLOURS[new])})
            assert double.class_of(changed) == double.targets[i]


def test_other_parts_carry_no_class_evidence() -> None:
    """The other parts and the background are never a class colour, and their colours are
    the same mix in every class: a model cannot cheat."""
    data = an8flower("train", images_per_class=60)
    counts = np.zeros((len(data.classes), len(OTHER_HUES)))
    for i in range(len(data)):
        flower = data.flower(i)
        for part in OTHER_PARTS:
            assert colour_name(flower.colours[part], SINGLE_COLOURS) is None
            assert colour_name(flower.colours[part], DOUBLE_COLOURS) is None
        for colour in flower.background:
            assert colour_name(colour, SINGLE_COLOURS) is None
        h, sat, _ = colorsys.rgb_to_hsv(*(c / 255 for c in flower.colours["petals"]))
        if sat > 0.35:
            distance = np.abs((h * 360 - np.array(OTHER_HUES) + 180) % 360 - 180)
            counts[data.targets[i], int(distance.argmin())] += 1
    assert (counts > 0).all()  # every class has petals of every other hue


def test_scores_of_a_heatmap(single: An8Flower) -> None:
    mask = single.mask(0)
    assert area_under_iou_curve(mask.astype(float), mask) == 1.0
    assert pointing_game(mask.astype(float), mask)
    inverse = (~mask).astype(float)
    assert area_under_iou_curve(inverse, mask) == 0.0 and not pointing_game(inverse, mask)
    # a coarse map is resized to the mask; a blurred disk scores between 0 and 1
    coarse = torch.nn.functional.avg_pool2d(torch.tensor(mask, dtype=torch.float)[None], 8)[0]
    curve = iou_curve(coarse, mask)
    assert curve.shape == (19,) and 0.2 < curve.mean() < 1.0
    assert pointing_game(coarse, mask)


def test_bundle(bundle: cv.ModelBundle, single: An8Flower) -> None:
    assert bundle.name == "flower_cnn" and isinstance(bundle.module, FlowerCNN)
    assert bundle.labels == single.classes
    assert bundle.input_size == (112, 112) and bundle.channels == 3
    image, _ = single[0]
    x = torch.from_numpy(single.render(0)[0]).permute(2, 0, 1)[None].float() / 255
    assert torch.allclose(bundle.preprocess(image), bundle.preprocess.normalize(x))


def batch(bundle: cv.ModelBundle, images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return bundle.preprocess.normalize(x)


def test_accuracy_on_held_out_flowers(bundle: cv.ModelBundle) -> None:
    # a seed the weights never saw (they were trained on seed 0's train split)
    held_out = an8flower("test", images_per_class=40, seed=12345)
    x = batch(bundle, [held_out.render(i)[0] for i in range(len(held_out))])
    with torch.no_grad():
        predicted = bundle.module(x).argmax(1)
    accuracy = float((predicted == torch.tensor(held_out.targets)).float().mean())
    assert accuracy >= 0.95


def test_model_reads_the_center_not_the_rest(bundle: cv.ModelBundle) -> None:
    data = an8flower("test", images_per_class=8, seed=777)
    rng = np.random.default_rng(1)
    hues = list(SINGLE_COLOURS.values())
    moved, moved_to, kept = [], [], []
    for i in range(len(data)):
        flower = data.flower(i)
        k = (data.targets[i] + 1 + int(rng.integers(5))) % 6
        moved.append(draw_flower(flower.recoloured(center=rgb(hues[k])), data.size)[0])
        moved_to.append(k)
        others = {p: rgb(float(rng.choice(OTHER_HUES)), v=0.6) for p in OTHER_PARTS}
        kept.append(draw_flower(flower.recoloured(**others), data.size)[0])
    with torch.no_grad():
        follows = bundle.module(batch(bundle, moved)).argmax(1) == torch.tensor(moved_to)
        stays = bundle.module(batch(bundle, kept)).argmax(1) == torch.tensor(data.targets)
    assert float(follows.float().mean()) >= 0.9 and float(stays.float().mean()) >= 0.9


def test_weights_file_matches_its_sidecar() -> None:
    info = json.loads(INFO.read_text())
    assert hashlib.sha256(WEIGHTS.read_bytes()).hexdigest() == info["sha256"]
    assert info["weights"] == WEIGHTS.name and info["test_accuracy"] >= 0.95
    assert "scripts/train_flower_cnn.py" in info["command"]
    assert WEIGHTS.stat().st_size < 300_000
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert state.keys() == FlowerCNN().state_dict().keys()
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())


# --- cv.load_model("flower_cnn_double"): the same CNN trained on the double variant ----------


@pytest.fixture(scope="module")
def double_bundle() -> cv.ModelBundle:
    return cv.load_model("flower_cnn_double")


def test_double_bundle(double_bundle: cv.ModelBundle, double: An8Flower) -> None:
    assert double_bundle.name == "flower_cnn_double"
    assert isinstance(double_bundle.module, FlowerCNN)
    assert double_bundle.labels == double.classes and len(double_bundle.labels) == 12
    assert double_bundle.input_size == (112, 112) and double_bundle.channels == 3


def test_double_accuracy_on_held_out_flowers(double_bundle: cv.ModelBundle) -> None:
    # a seed the weights never saw (they were trained on seed 0's train split)
    held_out = an8flower("test", "double", images_per_class=25, seed=12345)
    x = batch(double_bundle, [held_out.render(i)[0] for i in range(len(held_out))])
    with torch.no_grad():
        predicted = double_bundle.module(x).argmax(1)
    accuracy = float((predicted == torch.tensor(held_out.targets)).float().mean())
    assert accuracy >= 0.95


def test_double_model_reads_center_and_leaves_not_the_rest(
    double_bundle: cv.ModelBundle,
) -> None:
    data = an8flower("test", "double", images_per_class=5, seed=777)
    rng = np.random.default_rng(1)
    names = list(DOUBLE_COLOURS)
    moved, moved_to, kept = [], [], []
    for i in range(len(data)):
        flower = data.flower(i)
        pair = list(data.class_colours[data.targets[i]])
        which = i % 2  # recolour the center on even images, the leaves on odd ones
        pair[which] = str(rng.choice([n for n in names if n not in pair]))
        part = data.parts[which]
        recoloured = flower.recoloured(**{part: rgb(DOUBLE_COLOURS[pair[which]])})
        moved.append(draw_flower(recoloured, data.size)[0])
        moved_to.append(data.class_colours.index(tuple(pair)))
        assert data.class_of(recoloured) == moved_to[-1] != data.targets[i]
        others = {p: rgb(float(rng.choice(OTHER_HUES)), v=0.6) for p in ("stem", "petals")}
        kept.append(draw_flower(flower.recoloured(**others), data.size)[0])
    with torch.no_grad():
        predicted_moved = double_bundle.module(batch(double_bundle, moved)).argmax(1)
        predicted_kept = double_bundle.module(batch(double_bundle, kept)).argmax(1)
    follows = predicted_moved == torch.tensor(moved_to)
    stays = predicted_kept == torch.tensor(data.targets)
    assert float(follows[0::2].float().mean()) >= 0.9  # the center moved
    assert float(follows[1::2].float().mean()) >= 0.9  # the leaves moved
    assert float(stays.float().mean()) >= 0.9


def test_double_weights_file_matches_its_sidecar() -> None:
    weights, info_path = flower_cnn_double.WEIGHTS, flower_cnn_double.INFO
    info = json.loads(info_path.read_text())
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == info["sha256"]
    assert info["weights"] == weights.name == "flower_cnn_double.pt"
    assert info["model"] == "flower_cnn_double" and info["test_accuracy"] >= 0.95
    assert "scripts/train_flower_cnn.py --variant double" in info["command"]
    assert "variant='double'" in info["dataset"]
    assert weights.stat().st_size < 300_000
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert state.keys() == FlowerCNN(12).state_dict().keys()
    assert state["fc.weight"].shape == (12, 64)
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())
