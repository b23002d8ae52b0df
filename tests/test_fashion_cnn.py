"""cv.load_model("fashion_cnn"): the small CNN shipped with trained Fashion-MNIST weights.

Reads Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (``make data``).
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import cnnvis_widget as cv
from cnnvis_widget.datasets import FashionMNIST, fashion_mnist
from cnnvis_widget.encode import decode_payload
from cnnvis_widget.models import load_weights
from cnnvis_widget.zoo import fashion_cnn
from cnnvis_widget.zoo.fashion_cnn import INFO, WEIGHTS, FashionCNN

LAST_CONV = "features.conv5"


@pytest.fixture(scope="module")
def bundle() -> cv.ModelBundle:
    return cv.load_model("fashion_cnn")


@pytest.fixture(scope="module")
def test_set() -> FashionMNIST:
    return fashion_mnist("test")


@pytest.fixture(scope="module")
def info() -> dict:
    return json.loads(INFO.read_text())


def model_input(bundle: cv.ModelBundle, pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> the normalized model input (N, 1, 28, 28)."""
    return bundle.preprocess.normalize(pixels.unsqueeze(1).float() / 255.0)


def test_bundle(bundle: cv.ModelBundle, test_set: FashionMNIST) -> None:
    assert bundle.name == "fashion_cnn" and isinstance(bundle.module, FashionCNN)
    assert not bundle.module.training
    assert bundle.labels == test_set.classes and len(bundle.labels) == 10
    assert bundle.input_size == (28, 28) and bundle.channels == 1
    assert bundle.preprocess.mean == (0.2860,) and bundle.preprocess.std == (0.3530,)
    # A dataset image through the bundle's preprocessing is exactly the batched input.
    image, _ = test_set[0]
    assert torch.equal(bundle.preprocess(image), model_input(bundle, test_set.data[:1]))
    names = [name for name, _ in bundle.module.named_modules()]
    assert {"features.conv1", "features.bn1", "features.relu1", "features.pool1"} <= set(names)
    assert names[-2:] == ["gap", "fc"]


def test_accuracy_on_the_whole_test_set(
    bundle: cv.ModelBundle, test_set: FashionMNIST, info: dict
) -> None:
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test_set), 1000):
            x = model_input(bundle, test_set.data[start : start + 1000])
            predicted = bundle.module(x).argmax(1)
            correct += int((predicted == test_set.targets[start : start + 1000]).sum())
    accuracy = correct / len(test_set)
    assert accuracy >= 0.90
    # What the training script measured (thread counts may move a borderline image or two).
    assert accuracy == pytest.approx(info["test_accuracy"], abs=0.002)


def test_weights_file_matches_its_sidecar(info: dict) -> None:
    assert hashlib.sha256(WEIGHTS.read_bytes()).hexdigest() == info["sha256"]
    assert info["weights"] == WEIGHTS.name and info["test_accuracy"] >= 0.90
    assert "scripts/train_fashion_cnn.py" in info["command"]
    assert isinstance(info["seed"], int) and info["epochs"] >= 1
    assert WEIGHTS.stat().st_size < 300_000
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert state.keys() == FashionCNN().state_dict().keys()
    floats = [t for t in state.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 for t in floats)
    assert info["parameters"] == sum(p.numel() for p in FashionCNN().parameters())


class Payload:
    """Unpickling this would open (create) a file: a stand-in for code run by a pickle."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def test_a_pickle_with_objects_is_refused_unrun(tmp_path, monkeypatch) -> None:
    marker = tmp_path / "the pickle ran"
    evil = tmp_path / "fashion_cnn.pt"
    state: dict[str, object] = dict(FashionCNN().state_dict())
    state["features.conv1.weight"] = Payload(str(marker))
    torch.save(state, evil)
    with pytest.raises(ValueError, match="not a plain weights file"):
        load_weights(FashionCNN(), evil, "fix")
    # The same through cv.load_model, with the shipped file swapped for this one.
    monkeypatch.setattr(fashion_cnn, "WEIGHTS", evil)
    with pytest.raises(ValueError, match=r"not a plain weights file.*reinstall"):
        cv.load_model("fashion_cnn")
    assert not marker.exists()


def test_pretrained_false_is_the_random_init(bundle: cv.ModelBundle) -> None:
    random = cv.load_model("fashion_cnn", pretrained=False)
    assert not random.module.training and random.labels == bundle.labels
    assert isinstance(random.module, FashionCNN) and isinstance(bundle.module, FashionCNN)
    assert not torch.equal(random.module.fc.weight, bundle.module.fc.weight)


def test_gradcam_at_the_last_conv(bundle: cv.ModelBundle, test_set: FashionMNIST) -> None:
    x = model_input(bundle, test_set.data[:8])
    cam = cv.attribute(bundle.module, x, "gradcam", layer=LAST_CONV)
    assert cam.shape == (8, 1, 7, 7)
    assert torch.isfinite(cam).all() and (cam.flatten(1).amax(1) > 0).all()


def test_the_explorer_opens_it(test_set: FashionMNIST) -> None:
    image, label = test_set[0]  # an ankle boot
    explorer = cv.Explorer(cv.load_model("fashion_cnn"), image)
    assert explorer.model_name == "fashion_cnn" and explorer.message is None
    assert explorer.predictions[0]["index"] == label
    assert explorer.predictions[0]["label"] == "Ankle boot"
    assert decode_payload(explorer.image).shape[:2] == (28, 28)
    assert decode_payload(explorer.overlay_map).shape == (7, 7)
