"""The IoU tally against a straightforward implementation (store every mask, count with
NumPy), and the dataset-ratio property."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnvis_widget.datasets.concept_format import ConceptLabels, ConceptTable, concept_table
from cnnvis_widget.dissection.tally import IoUTally, unit_masks

TABLE = concept_table(
    {"color": ["red", "green", "blue"], "object": ["cat", "dog"], "scene": ["beach"]}
)
S = 8  # mask resolution


def random_labels(rng: np.random.Generator) -> ConceptLabels:
    """Colour on every image, objects on some (partial annotation), a scene on some."""
    labels = ConceptLabels()
    labels.pixels["color"] = [rng.integers(0, 4, (S, S)).astype(np.int32)]  # 0: unnamed
    if rng.random() < 0.6:
        objects = np.zeros((S, S), np.int32)
        top, left = rng.integers(0, S - 3, 2)
        objects[top : top + 3, left : left + 4] = rng.choice([4, 5])
        labels.pixels["object"] = [objects]
    if rng.random() < 0.4:
        labels.whole["scene"] = [6]
    return labels


def counted(mask: np.ndarray, labels: ConceptLabels, category: str, rule: str, size: int) -> bool:
    """Whether the unit's mask counts in the union on this image (see IoUTally)."""
    if rule == "annotated" or category in labels.whole:
        return True
    covered = np.zeros((size, size), bool)
    for label_map in labels.pixels.get(category, []):
        covered |= label_map > 0
    return bool((mask & covered).any())


def straightforward_iou(
    masks: np.ndarray,
    labels: list[ConceptLabels],
    union_rule: str = "lite",
    table: ConceptTable = TABLE,
) -> np.ndarray:
    """(C, L) by definition: per unit and concept, sums over images of |M & L| and of
    |M | L|, where M counts only on images annotated for the concept's category and, by
    Lite's rule, covering at least one pixel labelled in that category."""
    units, size = masks.shape[1], masks.shape[-1]
    iou = np.zeros((units, table.size))
    for concept in table.concepts:
        for unit in range(units):
            inter = union = 0
            for mask, image_labels in zip(masks[:, unit], labels, strict=True):
                mask = mask & counted(mask, image_labels, concept.category, union_rule, size)
                if concept.category not in image_labels.categories:
                    continue
                if concept.category in image_labels.whole:
                    whole = concept.index in image_labels.whole[concept.category]
                    label = np.full((size, size), whole)
                else:
                    label = np.zeros((size, size), bool)
                    for label_map in image_labels.pixels.get(concept.category, []):
                        label |= label_map == concept.index
                inter += int((mask & label).sum())
                union += int((mask | label).sum())
            iou[unit, concept.index] = inter / union if union else 0.0
    return iou


def test_tally_equals_the_definition_for_any_batching():
    rng = np.random.default_rng(0)
    n, units = 40, 5
    acts = torch.from_numpy(rng.normal(size=(n, units, 4, 4)).astype(np.float32))
    labels = [random_labels(rng) for _ in range(n)]
    thresholds = torch.from_numpy(
        np.quantile(acts.numpy().transpose(1, 0, 2, 3).reshape(units, -1), 0.8, axis=1)
    )
    masks = unit_masks(acts, thresholds, (S, S))
    expected = straightforward_iou(masks.numpy(), labels)
    whole = IoUTally(units, TABLE)
    whole.update(masks, labels)
    np.testing.assert_allclose(whole.iou().numpy(), expected, rtol=0, atol=1e-12)
    annotated = IoUTally(units, TABLE, union="annotated")
    annotated.update(masks, labels)
    by_annotation = straightforward_iou(masks.numpy(), labels, "annotated")
    np.testing.assert_allclose(annotated.iou().numpy(), by_annotation, rtol=0, atol=1e-12)
    assert not np.allclose(by_annotation, expected)  # the rules differ on this data
    # shards in another order merge to the same sums
    a, b = IoUTally(units, TABLE), IoUTally(units, TABLE)
    b.update(masks[25:], labels[25:])
    a.update(masks[:25], labels[:25])
    merged = b.merge(a)
    assert torch.equal(merged.intersection, whole.intersection)
    assert torch.equal(merged.unit_area, whole.unit_area)
    again = IoUTally.from_state_dict(merged.state_dict(), TABLE)
    assert torch.equal(again.iou(), whole.iou())


def test_dataset_iou_is_a_ratio_of_sums_not_a_mean_of_ratios():
    """Image 1: the unit covers a small concept exactly (IoU 1); image 2: a large concept it
    misses mostly. The mean of per-image IoUs is far from the dataset ratio."""
    table = concept_table({"object": ["thing"]})
    first = np.zeros((S, S), np.int32)
    first[0, 0] = 1
    second = np.ones((S, S), np.int32)
    masks = torch.zeros(2, 1, S, S, dtype=torch.bool)
    masks[0, 0, 0, 0] = True
    masks[1, 0, :1, :] = True  # 8 of its 64 pixels
    tally = IoUTally(1, table)
    tally.update(masks, [ConceptLabels({"object": [first]}), ConceptLabels({"object": [second]})])
    dataset = (1 + 8) / (1 + 64)
    per_image_mean = (1.0 + 8 / 64) / 2
    assert float(tally.iou()[0, 1]) == pytest.approx(dataset)
    assert abs(dataset - per_image_mean) > 0.4


def test_masks_are_resized_then_thresholded_strictly():
    acts = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    masks = unit_masks(acts, torch.tensor([2.0]), (2, 2))
    assert masks.flatten().tolist() == [False, False, False, True]
    bigger = unit_masks(acts, torch.tensor([1.5]), (4, 4))
    assert bigger.shape == (1, 1, 4, 4) and bigger[0, 0, -1, -1] and not bigger[0, 0, 0, 0]


def test_mismatched_sizes_are_refused():
    tally = IoUTally(2, TABLE)
    labels = ConceptLabels({"color": [np.zeros((S, S), np.int32)]})
    with pytest.raises(ValueError, match="label map has 64 pixels"):
        tally.update(torch.zeros(1, 2, 4, 4, dtype=torch.bool), [labels])
    with pytest.raises(ValueError, match="expected masks"):
        tally.update(torch.zeros(1, 3, S, S, dtype=torch.bool), [labels])


@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
def test_counting_only_crossing_units_equals_every_mask(upsample):
    """update_maps resizes only the units whose map can cross its threshold on an image; the
    sums equal the dense tally's, also where a threshold is exactly an image's maximum (the
    quantile is one of the values), for sparse, mostly negative maps, and on an image where
    no unit crosses."""
    rng = np.random.default_rng(3)
    n, units = 24, 7
    acts = torch.from_numpy(rng.normal(size=(n, units, 3, 5)).astype(np.float32))
    acts[:, 4] = -acts[:, 4].abs() * 1e3  # huge negatives next to the peak
    acts[5, 4] = 0.25
    acts[0] = -50.0  # no unit crosses on image 0
    acts[5, 4, 1, 2] = -1e3
    labels = [random_labels(rng) for _ in range(n)]
    thresholds = torch.from_numpy(
        np.quantile(acts.numpy().transpose(1, 0, 2, 3).reshape(units, -1), 0.97, axis=1)
    ).float()
    thresholds[2] = acts[7, 2].max()  # some image's peak is the threshold itself
    thresholds[4] = 0.2499
    dense = IoUTally(units, TABLE)
    dense.update(unit_masks(acts, thresholds, (S, S), upsample), labels)
    sparse = IoUTally(units, TABLE)
    sparse.update_maps(acts[:10], thresholds, (S, S), labels[:10], upsample)
    sparse.update_maps(acts[10:], thresholds, (S, S), labels[10:], upsample)
    assert torch.equal(sparse.intersection, dense.intersection)
    assert torch.equal(sparse.unit_area, dense.unit_area)
    assert torch.equal(sparse.label_area, dense.label_area)
    assert sparse.images == dense.images == n
    assert dense.unit_area[4].sum() > 0  # the lone peak of unit 4 is counted
