"""Feature visualization and synthesis: closed forms on tiny models, invariants, and the
properties the papers' methods must have on EfficientNet-Lite0's real weights."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from support import (
    TinyCNN,
    TinyResidual,
    hook_count,
    resnet18_with_batch_norm_statistics,
    seeded,
)
from torch import nn

import cnnvis_widget as cv
from cnnvis_widget.synthesis import Robustness, objectives, render
from cnnvis_widget.synthesis.image_params import (
    COLOR_DECORRELATION,
    decorrelate_colors,
    make_param,
)
from cnnvis_widget.synthesis.network import SynthesisNet
from cnnvis_widget.synthesis.preimage import PreimagePrior
from cnnvis_widget.synthesis.regularizers import alpha_norm, total_variation
from cnnvis_widget.synthesis.style import default_style_layers

UNIT = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # [0, 1] image = model input


def linear_model(weight: torch.Tensor) -> nn.Module:
    """T0: f(x) = W x on the flattened input."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], weight.shape[0], bias=False))
    with torch.no_grad():
        model[1].weight.copy_(weight)
    return model.eval()


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


# --- closed forms and parameterizations ------------------------------------------------------


def test_simonyan_class_model_reaches_the_closed_form_optimum_of_a_linear_model() -> None:
    # argmax w.x - l2 |x|^2 = w / (2 l2); with l2 = 0.5 the optimum is w itself, inside [0, 1].
    torch.manual_seed(0)
    weight = torch.rand(3, 3 * 4 * 4) * 0.8 + 0.1
    model = linear_model(weight)
    result = cv.visualize_class(
        model, 1, method="simonyan", l2=0.5, lr=0.5, steps=60, size=4, **UNIT
    )
    found, optimum = result.images.flatten(), weight[1]
    cosine = torch.nn.functional.cosine_similarity(found, optimum, dim=0)
    assert cosine > 0.999
    assert (found.norm() - optimum.norm()).abs() / optimum.norm() < 0.01
    assert result.trace.shape == (60, 1) and result.trace[-1, 0] > result.trace[0, 0]


def test_fourier_parameterization_has_the_exact_shape_and_a_one_over_f_spectrum() -> None:
    generator = torch.Generator().manual_seed(0)
    for size in ((32, 32), (31, 33), (20, 17)):
        image = make_param("fourier", 2, size, generator=generator, device=torch.device("cpu"))
        rendered = image()
        assert rendered.shape == (2, 3, *size) and not rendered.is_complex()
        assert float(rendered.detach().min()) >= 0 and float(rendered.detach().max()) <= 1
    # Radially averaged power of the linear image at init falls as f^-2 (amplitude 1/f).
    image = make_param(
        "fourier", 64, (64, 64), generator=generator, device=torch.device("cpu"), decorrelate=False
    )
    with torch.no_grad():
        linear = torch.logit(image().clamp(1e-6, 1 - 1e-6).double())
    power = torch.fft.fft2(linear).abs().pow(2).mean(dim=(0, 1))
    fy, fx = torch.meshgrid(torch.fft.fftfreq(64), torch.fft.fftfreq(64), indexing="ij")
    radius = torch.sqrt(fx**2 + fy**2)
    bands = torch.logspace(-1.3, -0.4, 8)
    log_f, log_p = [], []
    for low, high in itertools.pairwise(bands):
        ring = (radius >= low) & (radius < high)
        log_f.append(torch.log(radius[ring].mean()))
        log_p.append(torch.log(power[ring].mean()))
    f, p = torch.stack(log_f), torch.stack(log_p)
    slope = ((f - f.mean()) * (p - p.mean())).sum() / (f - f.mean()).pow(2).sum()
    assert -2.3 < float(slope) < -1.7


def test_colour_decorrelation_turns_white_noise_into_the_imagenet_covariance() -> None:
    noise = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)).double()
    coloured = decorrelate_colors(noise).flatten(2)[0]
    covariance = torch.cov(coloured)
    matrix = COLOR_DECORRELATION.double()
    torch.testing.assert_close(covariance, matrix @ matrix.T, atol=0.01, rtol=0.05)


def test_gradients_reach_the_parameters_through_every_transform() -> None:
    generator = torch.Generator().manual_seed(0)
    for kind in ("fourier", "pixel"):
        image = make_param(kind, 3, (32, 32), generator=generator, device=torch.device("cpu"))
        view = Robustness(out_size=48)(image(), generator)
        assert view.shape == (3, 3, 48, 48)
        (gradient,) = torch.autograd.grad(view.square().sum(), image.params)
        assert float(gradient.norm()) > 0


def test_priors_have_the_gradients_of_their_definitions() -> None:
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: alpha_norm(t, 6.0, 2.0), (x,))
    assert torch.autograd.gradcheck(lambda t: total_variation(t, 2.0, 0.5), (x,))
    assert torch.autograd.gradcheck(lambda t: total_variation(t, 1.0, 0.5), (x,))
    # Forward differences, zero at the last row and column (replicated boundary).
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 3, 4, 4)
    expected = 3 * 12 / 16  # 12 of 16 pixels have a difference of 1 in each of 3 channels
    assert float(total_variation(ramp, 2.0)) == pytest.approx(expected)


def test_composed_objectives_add_and_scale() -> None:
    features = {"a": torch.arange(2 * 3 * 2 * 2.0).view(2, 3, 2, 2)}
    one, two = objectives.channel("a", 1), objectives.channel("a", 2)
    torch.testing.assert_close((one - 0.5 * two)(features), one(features) - 0.5 * two(features))
    per_image = objectives.channel("a", [0, 2])(features)
    torch.testing.assert_close(per_image, torch.tensor([1.5, 21.5]))
    assert objectives.neuron("a", 1)(features).tolist() == [7.0, 19.0]  # bottom-right centre
    same = {"a": torch.ones(3, 4, 2, 2)}
    assert objectives.diversity("a")(same).tolist() == pytest.approx([-1.0] * 3)


# --- feature visualization ---------------------------------------------------------------------


def test_whole_layer_runs_in_batches_and_streams_its_place_in_the_layer() -> None:
    model = seeded(TinyCNN(), dtype=torch.float32)
    frames: list[tuple[int, int, int, int]] = []
    result = cv.visualize_feature(
        model,
        "conv2",
        None,
        steps=3,
        size=16,
        batch_size=6,
        on_step=lambda f: frames.append((f.step, f.total, f.first, f.images.shape[0])),
    )
    assert result.images.shape == (16, 3, 16, 16) and result.trace.shape == (3, 16)
    assert result.info["units"] == list(range(16))
    assert result.to_pil(columns=8).size == (8 * 16 + 7 * 2, 2 * 16 + 2)
    assert frames[0] == (1, 9, 0, 6) and frames[3] == (4, 9, 6, 6) and frames[-1] == (9, 9, 12, 4)


def test_stop_from_on_step_returns_the_partial_result_and_resume_continues_exactly() -> None:
    model = seeded(TinyCNN(), dtype=torch.float32)
    settings = {"steps": 6, "size": 16, "seed": 3}
    whole = cv.visualize_feature(model, "conv2", [1, 2], **settings)
    stopped = cv.visualize_feature(model, "conv2", [1, 2], on_step=lambda f: f.step < 3, **settings)
    assert stopped.stopped and stopped.trace.shape == (3, 2)
    resumed = cv.visualize_feature(model, "conv2", [1, 2], resume=stopped, **settings)
    assert not resumed.stopped and resumed.trace.shape == (6, 2)
    torch.testing.assert_close(resumed.trace, whole.trace)
    torch.testing.assert_close(resumed.images, whole.images)


@pytest.mark.slow
def test_each_image_of_a_channel_batch_excites_its_own_channel_most_on_lite0(
    lite0: cv.ModelBundle,
) -> None:
    layer, units = "_blocks.4", [0, 5, 11, 17]
    result = cv.visualize_feature(lite0, layer, units, steps=40, seed=0)
    trace = result.trace
    assert (trace[-5:].mean(0) > trace[:5].mean(0)).all(), "the objective must rise"
    acts = cv.activations(lite0.module, lite0.preprocess(result.images), layer)[layer]
    response = acts[:, units].mean(dim=(2, 3))  # response[i, j]: image i, channel units[j]
    assert response.argmax(dim=0).tolist() == list(range(len(units)))


@pytest.mark.slow
def test_class_visualizations_raise_the_target_logit_on_lite0(lite0: cv.ModelBundle) -> None:
    for method, steps in (("generation", 12), ("yosinski", 12), ("lucid", 12)):
        result = cv.visualize_class(lite0, 281, method=method, steps=steps, size=96)
        assert result.trace[-3:].mean() > result.trace[:3].mean(), method
        assert float(result.images.min()) >= 0 and float(result.images.max()) <= 1


# --- pre-images ----------------------------------------------------------------------------------


def test_inverting_the_identity_reconstructs_the_image() -> None:
    # A natural image (the prior fights noise images, as it should), C = 300 as in the paper.
    identity = nn.Sequential(nn.Identity()).eval()
    photo = cv.Preprocess.to_unit_tensor(cv.sample_image("cat").resize((32, 32)))[None]
    x = SynthesisNet.of(identity).normalize(photo)
    result = cv.invert(identity, x, "0", strength=300, steps=(300, 50))
    assert (result.images - photo).norm() / photo.norm() < 0.05
    assert result.trace.shape == (350, 1) and result.trace[-1, 0] < 0.02


def test_pre_image_pixels_stay_within_the_hard_bound() -> None:
    prior = PreimagePrior()
    x = torch.randn(2, 3, 8, 8) * 300
    prior.project(x)
    assert float(x.norm(dim=1).max()) <= prior.hard_bound + 1e-3


@pytest.mark.slow
def test_inverting_lite0_reconstructs_early_layers_and_loses_more_deeper(
    lite0: cv.ModelBundle,
) -> None:
    x = lite0.preprocess(cv.sample_image("cat"))
    photo = lite0.preprocess.denormalize(x)
    scores = {}
    for layer in ("_blocks.1", "_blocks.10"):
        result = cv.invert(lite0, x, layer, steps=(100, 20))
        assert result.trace[-1, 0] < 0.5 * result.trace[0, 0], "the feature error must fall"
        scores[layer] = correlation(result.images, photo)
    assert scores["_blocks.1"] > 0.8, scores
    assert scores["_blocks.10"] < scores["_blocks.1"] - 0.1, scores


@pytest.mark.slow
def test_caricature_amplifies_what_the_layer_sees(lite0: cv.ModelBundle) -> None:
    x = lite0.preprocess(cv.sample_image("cat"))
    result = cv.caricature(lite0, x, "_blocks.5", steps=20)
    assert result.trace[-1, 0] > result.info["original_match"][0]


# --- deep dream, attacks, fooling, style ----------------------------------------------------------


def test_deep_dream_steps_are_normalized_and_the_objective_rises() -> None:
    model = seeded(TinyCNN(), dtype=torch.float32)
    grey = SynthesisNet.of(model, **UNIT).normalize(torch.full((1, 3, 16, 16), 0.5))
    step = 1e-3
    one = cv.deep_dream(model, grey, "conv2", octaves=1, steps=1, jitter=0, step_size=step, **UNIT)
    # No pixel hits the clip from mid-grey, so mean |change| is the step size exactly.
    assert float((one.images - 0.5).abs().mean()) == pytest.approx(step, rel=1e-4)
    again = cv.deep_dream(
        model, grey, "conv2", octaves=1, steps=1, jitter=0, step_size=step, **UNIT
    )
    assert torch.equal(one.images, again.images)
    result = cv.deep_dream(model, grey, "conv2", octaves=2, steps=5, **UNIT)
    assert result.images.shape == grey.shape and result.trace.shape == (10, 1)
    for octave in (result.trace[:5, 0], result.trace[5:, 0]):
        assert octave[-1] > octave[0]


def test_fgsm_on_a_two_class_linear_model_is_epsilon_times_the_weight_difference_sign() -> None:
    torch.manual_seed(0)
    weight = torch.randn(2, 3 * 4 * 4)
    model = linear_model(weight)
    x = torch.full((1, 3, 4, 4), 0.5)
    predicted = int(model(x).argmax())
    eps = 0.01
    result = cv.adversarial(model, x, method="fgsm", epsilon=eps, **UNIT)
    expected = eps * torch.sign(weight[1 - predicted] - weight[predicted]).view(1, 3, 4, 4)
    torch.testing.assert_close(result.info["perturbation"], expected)


def test_pgd_stays_in_the_ball_and_beats_fgsm_on_a_batch() -> None:
    model = seeded(TinyCNN(), dtype=torch.float32)
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    eps = 4 / 255
    fgsm = cv.adversarial(model, x, method="fgsm", epsilon=eps, **UNIT)
    pgd = cv.adversarial(model, x, method="pgd", epsilon=eps, steps=20, **UNIT)
    for result in (fgsm, pgd):
        assert float(result.info["perturbation"].abs().max()) <= eps + 1e-7
        assert float(result.images.min()) >= 0 and float(result.images.max()) <= 1
    labels = torch.tensor([c for c, _ in fgsm.info["before"]])

    def loss(images: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(images), labels, reduction="none")

    with torch.no_grad():
        assert (loss(pgd.images) >= loss(fgsm.images) - 1e-6).float().mean() >= 0.75


@pytest.mark.slow
def test_attacks_on_the_cat_photo(lite0: cv.ModelBundle) -> None:
    x = lite0.preprocess(cv.sample_image("cat"))
    fgsm = cv.adversarial(lite0, x, method="fgsm", epsilon=2 / 255)
    assert fgsm.info["after"][0][0] != fgsm.info["before"][0][0]
    pgd = cv.adversarial(lite0, x, method="pgd", epsilon=2 / 255, target=1, steps=10)
    assert pgd.info["after"][0][0] == 1
    assert float(pgd.info["perturbation"].abs().max()) <= 2 / 255 + 1e-7


@pytest.mark.slow
def test_fooling_image_reaches_99_percent(lite0: cv.ModelBundle) -> None:
    result = cv.fooling_image(lite0, 281, confidence=0.99)
    assert result.info["probability"][0] >= 0.99
    assert lite0.predict(lite0.preprocess(result.images), 1)[0][0][0] == 281


def test_style_transfer_lowers_its_loss_and_picks_gatys_layers_on_vgg() -> None:
    import torchvision

    vgg = torchvision.models.vgg16(weights=None).eval()
    style, content = default_style_layers(SynthesisNet.of(vgg), (64, 64))
    assert style == ["features.0", "features.5", "features.10", "features.17", "features.24"]
    assert content == "features.19"  # conv4_2
    model = seeded(TinyCNN(), dtype=torch.float32)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    result = cv.style_transfer(model, images[:1], images[1:], steps=20, lr=0.05, **UNIT)
    assert result.trace[-1, 0] < result.trace[0, 0]


# --- Erhan et al. 2009: norm-constrained ascent and restart stability -------------------------


def test_erhan_ascent_finds_the_closed_form_optimum_of_a_linear_channel() -> None:
    # A channel that is linear in the input: mean_ij conv(x)_k = g . x + b, so the maximum on
    # the sphere ||x|| = rho is rho g / ||g||, reached from every start (stability 1).
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
    size, rho = 12, 7.0
    result = cv.visualize_feature(
        model, "0", [2, 3], method="erhan", restarts=3, rho=rho, steps=60, lr=0.2, size=size,
        mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3),
    )  # fmt: skip
    inputs = result.info["inputs"]
    assert inputs.shape == (6, 3, size, size) and result.images.shape == (6, 3, size, size)
    assert result.info["units"] == [2, 2, 2, 3, 3, 3]
    torch.testing.assert_close(inputs.flatten(1).norm(dim=1), torch.full((6,), rho))
    for row, channel in enumerate(result.info["units"]):
        probe = torch.zeros(1, 3, size, size, requires_grad=True)
        (gradient,) = torch.autograd.grad(model(probe)[0, channel].mean(), probe)
        cosine = torch.nn.functional.cosine_similarity(
            inputs[row].flatten(), gradient.flatten(), dim=0
        )
        assert cosine > 0.999, (row, float(cosine))
    assert result.info["stability"] == pytest.approx([1.0, 1.0], abs=1e-3)
    assert (result.trace[-1] > result.trace[0]).all()
    assert float(result.images.min()) >= 0 and float(result.images.max()) <= 1


def test_restart_stability_tells_a_unique_optimum_from_an_unstable_one() -> None:
    from cnnvis_widget.synthesis.erhan import restart_stability

    generator = torch.Generator().manual_seed(0)
    same = torch.randn(1, 3, 8, 8, generator=generator)
    # Brighter, contrast-scaled and translated copies of one pattern: the same optimum.
    stable = torch.cat([same, 2 * same + 1, same.roll(shifts=(3, -2), dims=(2, 3))])
    unrelated = torch.randn(3, 3, 32, 32, generator=generator)
    big = torch.nn.functional.interpolate(stable, size=(32, 32), mode="nearest")
    values = restart_stability(torch.cat([big, unrelated]), 3)
    assert values[0] == pytest.approx(1.0, abs=1e-6) and abs(values[1]) < 0.15
    assert all(v != v for v in restart_stability(unrelated, 1))  # NaN: nothing to compare


@pytest.mark.slow
def test_erhan_ascent_on_lite0_raises_its_channel_under_the_norm(lite0: cv.ModelBundle) -> None:
    result = cv.visualize_feature(
        lite0, "_blocks.4", [0, 5], method="erhan", restarts=2, steps=30, size=64
    )
    inputs = result.info["inputs"]
    rho = 3**0.5 * 64
    torch.testing.assert_close(inputs.flatten(1).norm(dim=1), torch.full((4,), rho))
    assert (result.trace[-3:].mean(0) > result.trace[:3].mean(0) + 1).all()
    assert all(-1 <= s <= 1 for s in result.info["stability"])
    # Each optimum excites its own channel more than the other unit's optimum does.
    acts = cv.activations(lite0.module, inputs, "_blocks.4")["_blocks.4"].mean(dim=(2, 3))
    assert (acts[:2, 0] > acts[2:, 0]).all() and (acts[2:, 5] > acts[:2, 5]).all()


def test_erhan_refuses_options_it_does_not_have() -> None:
    model = seeded(TinyCNN(), dtype=torch.float32)
    with pytest.raises(ValueError, match="takes no diversity, param"):
        cv.visualize_feature(model, "conv2", 0, method="erhan", diversity=0.1, param="pixel")
    with pytest.raises(ValueError, match="method must be 'lucid' or 'erhan'"):
        cv.visualize_feature(model, "conv2", 0, method="adam")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="restarts must be"):
        cv.visualize_feature(model, "conv2", 0, restarts=0)
    with pytest.raises(ValueError, match="rho must be a positive"):
        cv.visualize_feature(model, "conv2", 0, method="erhan", rho=-1.0, steps=1)
    with pytest.raises(ValueError, match="pass method='erhan'"):
        cv.visualize_feature(model, "conv2", 0, rho=3.0, steps=1)
    with pytest.raises(ValueError, match="takes no decorrelate"):
        cv.visualize_feature(model, "conv2", 0, method="erhan", decorrelate=False, steps=1)
    # No transform is Erhan's setting already: accepted.
    cv.visualize_feature(model, "conv2", 0, method="erhan", transform=None, steps=1, size=16)


def test_a_stopped_run_reports_no_restart_stability() -> None:
    model = seeded(TinyCNN(), dtype=torch.float32)
    result = cv.visualize_feature(
        model, "conv2", [0, 1], restarts=3, batch_size=4, steps=3, size=16,
        on_step=lambda frame: frame.step < 4,  # stops in the second batch
    )  # fmt: skip
    assert result.stopped and "stability" not in result.info
    finished = cv.visualize_feature(model, "conv2", [0, 1], restarts=3, steps=2, size=16)
    assert len(finished.info["stability"]) == 2


# --- rules every method obeys ---------------------------------------------------------------------

CALLS = {
    "visualize_feature": lambda m, x: cv.visualize_feature(m, "conv2", [0, 1], steps=2, size=16),
    "erhan": lambda m, x: cv.visualize_feature(
        m, "conv2", 1, method="erhan", restarts=2, steps=2, size=16
    ),
    "visualize_class": lambda m, x: cv.visualize_class(m, 3, steps=2, size=16),
    "render": lambda m, x: render(m, objectives.channel("conv2", 0), steps=2, size=16),
    "invert": lambda m, x: cv.invert(m, x, "conv2", steps=(2, 1)),
    "caricature": lambda m, x: cv.caricature(m, x, "conv2", steps=2),
    "deep_dream": lambda m, x: cv.deep_dream(m, x, "conv2", octaves=2, steps=1),
    "fooling_image": lambda m, x: cv.fooling_image(m, 3, steps=2, size=16),
    "fgsm": lambda m, x: cv.adversarial(m, x, epsilon=0.01),
    "pgd": lambda m, x: cv.adversarial(m, x, method="pgd", epsilon=0.01, steps=2),
    "style_transfer": lambda m, x: cv.style_transfer(m, x[:1], x[1:], steps=2),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_every_method_leaves_the_model_as_found(name: str) -> None:
    model = seeded(TinyResidual(), dtype=torch.float32).train()
    model.conv1.weight.requires_grad_(False)
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    result = CALLS[name](model, x)
    assert model.training and model.bn1.training
    assert not model.conv1.weight.requires_grad and model.fc.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert hook_count(model) == 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert float(result.images.min()) >= 0 and float(result.images.max()) <= 1


def test_model_is_restored_when_a_method_raises() -> None:
    model = seeded(TinyResidual(), dtype=torch.float32).train()
    with pytest.raises(ValueError, match="out of range"):
        cv.visualize_feature(model, "conv2", [99], steps=2, size=16)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert hook_count(model) == 0


def test_bad_input_names_the_fix() -> None:
    model = seeded(TinyCNN(), dtype=torch.float32)
    with pytest.raises(ValueError, match="Valid layer names"):
        cv.visualize_feature(model, "conv9", 0, steps=1)
    with pytest.raises(ValueError, match="kind must be"):
        cv.visualize_feature(model, "conv2", 0, kind="pixel", steps=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epsilon must lie in"):
        cv.adversarial(model, torch.rand(1, 3, 8, 8), epsilon=2)
    with pytest.raises(ValueError, match=r"bundle\.preprocess"):
        cv.invert(model, torch.rand(3, 8, 8), "conv2")
    with pytest.raises(ValueError, match="method must be"):
        cv.visualize_class(model, 1, method="dream")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be an int"):
        cv.visualize_feature(model, "conv2", 0, steps=1, seed=1.5)  # type: ignore[arg-type]


def test_neuron_and_direction_objectives_rise_and_beat_noise_images() -> None:
    model = seeded(TinyCNN(), dtype=torch.float32)
    neuron = cv.visualize_feature(model, "conv2", (3, 4, 4), kind="neuron", steps=30, size=16)
    assert neuron.trace[-5:].mean() > neuron.trace[:5].mean()
    vector = torch.zeros(16)
    vector[[2, 7]] = 1.0
    along = cv.visualize_feature(model, "conv2", vector, kind="direction", steps=30, size=16)
    assert along.trace[-5:].mean() > along.trace[:5].mean()
    # The optimized image excites the channel more than 100 noise images do.
    channel = cv.visualize_feature(model, "conv2", 5, steps=60, size=16, transform=None)
    noise = torch.rand(100, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    net = SynthesisNet.of(model)
    with net.session(), torch.no_grad():
        found = net.features(channel.images, ["conv2"])["conv2"][:, 5].mean()
        baseline = net.features(noise, ["conv2"])["conv2"][:, 5].mean(dim=(1, 2))
    assert float(found) > float(baseline.max())


@pytest.mark.parametrize("preset", [1, 2, 3, 4])
def test_yosinski_presets_run_in_range_and_raise_the_logit(preset: int) -> None:
    model = seeded(TinyCNN(), dtype=torch.float32)
    result = cv.visualize_class(model, 2, method="yosinski", preset=preset, steps=12, size=16)
    assert float(result.images.min()) >= 0 and float(result.images.max()) <= 1
    assert result.trace[-1, 0] > result.trace[0, 0]


def test_inverting_an_average_pool_recovers_the_low_pass_of_the_image() -> None:
    # Phi = 4x4 average pooling keeps only the low frequencies: the pre-image must agree with
    # the photo once both are pooled, whatever the prior puts in the high frequencies.
    pool = nn.Sequential(nn.AvgPool2d(4)).eval()
    photo = cv.Preprocess.to_unit_tensor(cv.sample_image("cat").resize((32, 32)))[None]
    x = SynthesisNet.of(pool).normalize(photo)
    result = cv.invert(pool, x, "0", strength=300, steps=(300, 50))
    low = nn.functional.avg_pool2d
    assert correlation(low(result.images, 4), low(photo, 4)) > 0.98


def test_review_regressions_give_clear_errors_and_honest_metadata() -> None:
    model = seeded(TinyCNN(), dtype=torch.float32)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="one \\(channel, row, col\\) triple"):
        cv.visualize_feature(model, "conv2", [(1, 2, 2), (3, 1, 1)], kind="neuron", steps=1)
    with pytest.raises(TypeError, match="channel index"):
        cv.visualize_feature(model, "conv2", "5", steps=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"labels\.index"):
        cv.visualize_class(model, "tabby", steps=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps must be a positive int"):
        cv.visualize_class(model, 1, steps=0)
    with pytest.raises(ValueError, match="size must be a positive int"):
        cv.visualize_feature(model, "conv2", 0, steps=1, size=0)
    with pytest.raises(ValueError, match="out of range: the model has 10 classes"):
        cv.fooling_image(model, 10, steps=1, size=16)
    with pytest.raises(ValueError, match="out of range: the model has 10 classes"):
        cv.adversarial(model, x, target=12, **UNIT)
    with pytest.raises(ValueError, match="one per image"):
        cv.adversarial(model, x, target=[1, 2], **UNIT)
    with pytest.raises(ValueError, match="float model input"):
        cv.invert(model, (x * 255).to(torch.uint8), "conv2")
    import numpy as np

    assert cv.visualize_feature(model, "conv2", 0, steps=1, size=16, seed=np.int64(3)).steps == 1
    # Metadata: fooling steps only when reached; caricature's match is not called an error.
    never = cv.fooling_image(model, 3, confidence=0.9999, steps=2, size=16)
    assert never.info["steps_to_confidence"] == [None]
    sketch = cv.caricature(model, x, "conv2", steps=2)
    assert "match" in sketch.info and "feature_error" not in sketch.info
    # Resuming a different unit is refused; a stopped whole layer keeps every finished trace.
    part = cv.visualize_feature(model, "conv2", [3], steps=4, size=16, on_step=lambda f: f.step < 2)
    with pytest.raises(ValueError, match="resume= continues"):
        cv.visualize_feature(model, "conv2", [9], steps=4, size=16, resume=part)
    layer = cv.visualize_feature(
        model, "conv2", [0, 1, 2], steps=3, size=16, batch_size=2,
        on_step=lambda f: not (f.first == 2 and f.step >= 4),
    )  # fmt: skip
    assert layer.stopped and layer.trace.shape == (3, 3)
    assert not layer.trace[:, :2].isnan().any() and layer.trace[1:, 2].isnan().all()


def test_style_transfer_on_a_float64_model_with_a_batch_of_contents() -> None:
    model = seeded(TinyCNN())  # float64
    images = torch.rand(
        3, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    result = cv.style_transfer(model, images[:2], images[2:], steps=3, **UNIT)
    assert result.trace.shape == (3, 2)


def test_folded_layer_stand_in_matches_the_model_and_its_input_gradient() -> None:
    import torchvision

    from cnnvis_widget.synthesis.stand_in import layer_stand_in

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    for module in model.modules():  # non-trivial batch norm statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 64, 64)
    folded = SynthesisNet.of(model)
    exact = SynthesisNet.of(model)
    exact.fold = False
    outputs = {}
    for name, net in (("folded", folded), ("exact", exact)):
        images = net.denormalize(x).requires_grad_(True)
        with net.session():
            acts = net.features(images, ["layer3"])["layer3"]
            (gradient,) = torch.autograd.grad(acts.square().sum(), images)
        outputs[name] = (acts.detach(), gradient)
    torch.testing.assert_close(outputs["folded"][0], outputs["exact"][0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(outputs["folded"][1], outputs["exact"][1], rtol=1e-3, atol=1e-3)
    assert layer_stand_in(model, ["layer3"], x[:1]) is not None  # it was used, and is cached
    assert hook_count(model) == 0 and all(p.requires_grad for p in model.parameters())
    # ResNet runs `relu` twice per block: the plain name means its last call, in the cut graph
    # as through the hooks.
    assert layer_stand_in(model, ["layer1.0.relu"], x[:1]) is not None
    out = _folded_and_exact(model, ["layer1.0.relu"], x)
    torch.testing.assert_close(
        out["folded"][0]["layer1.0.relu"], out["exact"][0]["layer1.0.relu"], rtol=1e-4, atol=1e-4
    )
    # The exact path returns what was asked for, also on its first (not stopped early) call.
    assert list(out["exact"][0]) == ["layer1.0.relu"]


def _folded_and_exact(
    model: nn.Module, names: list[str], x: torch.Tensor
) -> dict[str, tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """Features of ``names`` and the input gradient of their summed squares, computed through
    the folded stand-in and through the model with hooks."""
    outputs = {}
    for fold in (True, False):
        net = SynthesisNet.of(model)
        net.fold = fold
        images = net.denormalize(x).requires_grad_(True)
        with net.session():
            features = net.features(images, names)
            loss = sum(f.float().square().mean() for f in features.values())
            (gradient,) = torch.autograd.grad(loss, images)
        outputs["folded" if fold else "exact"] = (
            {k: v.detach() for k, v in features.items()},
            gradient,
        )
    return outputs


def test_stand_in_for_several_layers_and_the_logits_matches_the_model() -> None:

    from cnnvis_widget.synthesis.network import LOGITS
    from cnnvis_widget.synthesis.stand_in import layer_stand_in

    model = resnet18_with_batch_norm_statistics(num_classes=10)
    x = torch.randn(2, 3, 64, 64)
    names = ["layer3", "layer1", LOGITS]
    out = _folded_and_exact(model, names, x)
    assert list(out["folded"][0]) == names
    for name in names:
        torch.testing.assert_close(
            out["folded"][0][name], out["exact"][0][name], rtol=1e-4, atol=1e-4
        )
    torch.testing.assert_close(out["folded"][1], out["exact"][1], rtol=1e-3, atol=1e-4)
    assert layer_stand_in(model, ["layer3", "layer1"], x[:1], logits=True) is not None
    assert hook_count(model) == 0


def test_stand_in_gives_convs_and_their_batch_norms() -> None:
    """Wanted convs and their batch norms each give their own output."""

    from cnnvis_widget.synthesis.stand_in import layer_stand_in

    model = resnet18_with_batch_norm_statistics(num_classes=10)
    x = torch.randn(1, 3, 64, 64)
    names = ["conv1", "bn1", "layer1.0.conv2", "layer1.0.bn2"]
    assert layer_stand_in(model, names, x) is not None
    out = _folded_and_exact(model, names, x)
    for name in names:
        torch.testing.assert_close(
            out["folded"][0][name], out["exact"][0][name], rtol=1e-4, atol=1e-4
        )
    torch.testing.assert_close(out["folded"][1], out["exact"][1], rtol=1e-3, atol=1e-5)
    assert not torch.allclose(out["folded"][0]["conv1"], out["folded"][0]["bn1"], atol=1e-2)


def test_a_wanted_conv_keeps_its_batch_norm_unfolded_even_with_zero_scale() -> None:
    """A zero batch-norm weight (zero-init residual blocks) cannot be divided out of a folded
    conv; the wanted conv is simply not folded, and everything else still is."""
    import torchvision

    from cnnvis_widget.synthesis.network import LOGITS
    from cnnvis_widget.synthesis.stand_in import layer_stand_in

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10, zero_init_residual=True).eval()
    x = torch.randn(1, 3, 64, 64)
    names = ["layer1.0.conv2", LOGITS]
    stand_in = layer_stand_in(model, ["layer1.0.conv2"], x, logits=True)
    assert stand_in is not None
    kept = {str(n.target) for n in stand_in.graph.nodes if n.op == "call_module"}
    assert "layer1.0.bn2" in kept and "layer1.0.bn1" not in kept  # bn1 folded, bn2 kept
    out = _folded_and_exact(model, names, x)
    for name in names:
        torch.testing.assert_close(
            out["folded"][0][name], out["exact"][0][name], rtol=1e-4, atol=1e-4
        )
    torch.testing.assert_close(out["folded"][1], out["exact"][1], rtol=1e-3, atol=1e-4)


class _InPlaceAfterBlock(nn.Module):
    """conv + batch norm, then an in-place ReLU on that block's output, then another block."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.block(x)))


def test_stand_in_keeps_a_layer_output_that_a_later_in_place_relu_overwrites() -> None:
    from cnnvis_widget.synthesis.stand_in import layer_stand_in

    torch.manual_seed(0)
    model = _InPlaceAfterBlock().eval()
    x = torch.randn(1, 3, 12, 12)
    out = _folded_and_exact(model, ["block", "head"], x)
    assert layer_stand_in(model, ["block", "head"], x) is not None
    block = out["folded"][0]["block"]
    assert (block < 0).any()  # the block's output, not the ReLU's
    torch.testing.assert_close(block, out["exact"][0]["block"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["folded"][1], out["exact"][1], rtol=1e-3, atol=1e-5)
