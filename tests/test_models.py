"""The embedded EfficientNet-Lite0 sees what a person sees; torchvision models load offline."""

from __future__ import annotations

import pytest
import torch

import cnnvis_widget as cv


def top(bundle: cv.ModelBundle, name: str, k: int) -> list[str]:
    x = bundle.preprocess(cv.sample_image(name))
    return [label for _, label, _ in bundle.predict(x, k)[0]]


def test_lite0_classifies_the_photos_like_a_person(lite0) -> None:
    assert lite0.name == "efficientnet_lite0" and lite0.input_size == (224, 224)
    assert len(lite0.labels) == 1000 and lite0.labels[967] == "espresso"
    assert top(lite0, "coffee", 1) == ["espresso"]
    cats = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
    assert cats & set(top(lite0, "cat", 3))
    assert not lite0.module.training


def test_lite0_weights_are_real(lite0) -> None:
    # Random weights would not put 90% of the mass on one class of a real photo.
    x = lite0.preprocess(cv.sample_image("coffee"))
    (best,) = lite0.predict(x, 1)[0]
    assert best[2] > 0.8


@pytest.mark.parametrize(
    "name", ["resnet18", "vgg11", "alexnet", "mobilenet_v3_small", "densenet121", "googlenet"]
)
def test_torchvision_random_weights(name: str) -> None:
    bundle = cv.load_model(name, pretrained=False)
    assert not bundle.module.training and len(bundle.labels) == 1000
    x = bundle.preprocess(cv.sample_image("cat"))
    with torch.no_grad():
        assert bundle.module(x).shape == (1, 1000)


def test_pretrained_reads_the_local_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="checkpoints") as error:
        cv.load_model("resnet18", pretrained=True)
    assert "pretrained=False" in str(error.value)
    expected = str(error.value).split("expected ")[1].split(". ")[0]
    reference = cv.load_model("resnet18", pretrained=False).module
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), expected)
    loaded = cv.load_model("resnet18", pretrained=True).module
    for a, b in zip(reference.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_unknown_model_suggests_names() -> None:
    with pytest.raises(ValueError, match="resnet18"):
        cv.load_model("resnet81", pretrained=False)


def test_predict_rejects_non_classifier_output() -> None:
    bundle = cv.ModelBundle(torch.nn.Conv2d(3, 4, 3), cv.Preprocess(), labels=[])
    with pytest.raises(ValueError, match=r"logits \(N, classes\)"):
        bundle.predict(torch.zeros(1, 3, 8, 8))
