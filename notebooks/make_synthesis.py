"""Writes synthesis.ipynb, the feature-visualization notebook (run it after editing the cells
below; the notebook is committed without outputs and executed by tests/test_notebooks.py)."""

from pathlib import Path

from make_tour import write_notebook

CELLS = [
    (
        "markdown",
        "# What does a CNN want to see?\n\n"
        "Feature visualization and image synthesis with cnnvis-widget: every function optimizes an "
        "image for the network and returns `.images` (K, 3, H, W) in [0, 1] and `.trace`, the "
        "quantity optimized at each step. Step counts here are small so the notebook runs in a "
        "minute or two on a laptop CPU; the defaults are the papers' (hundreds of steps).",
    ),
    (
        "code",
        "import cnnvis_widget as cv\n\n"
        "bundle = cv.load_model()  # EfficientNet-Lite0 with its ImageNet weights\n"
        'x = bundle.preprocess(cv.sample_image("cat"))\n'
        "bundle.predict(x, k=3)",
    ),
    (
        "markdown",
        "## 1. What a channel responds to (activation maximization)\n\n"
        "Start from noise in a Fourier parameterization with decorrelated colour and follow the "
        "gradient of one channel's mean activation, under small random jitter, scaling and "
        "rotation each step (Olah et al. 2017). Several channels run as one batch.",
    ),
    (
        "code",
        'early = cv.visualize_feature(bundle, "_blocks.2", [0, 3, 7, 12], steps=48)\n'
        'later = cv.visualize_feature(bundle, "_blocks.8", [0, 3, 7, 12], steps=48)\n'
        "early.to_pil()",
    ),
    ("code", "later.to_pil()  # deeper channels want larger, more object-like patterns"),
    (
        "code",
        "# The objective rose: mean activation of each channel, first and last step\n"
        "later.trace[0].tolist(), later.trace[-1].tolist()",
    ),
    (
        "markdown",
        "## 2. Objectives compose\n\n"
        "One channel minus another, or the same channel four times with a diversity term that "
        "pushes the four images apart.",
    ),
    (
        "code",
        'goal = cv.objectives.channel("_blocks.8", 3) - cv.objectives.channel("_blocks.8", 7)\n'
        "cv.render(bundle, goal, steps=48).to_pil()",
    ),
    (
        "code",
        'diverse = cv.visualize_feature(bundle, "_blocks.8", [3] * 4, diversity=1.0, steps=48)\n'
        "diverse.to_pil()",
    ),
    (
        "markdown",
        "### Why the priors? Plain ascent (Erhan et al. 2009)\n\n"
        "Without a parameterization, transforms or penalties, only the input's norm held fixed, "
        "gradient ascent finds a high-frequency texture, and a different one from every random "
        "start. `restarts=3` runs three starts per channel; `info['stability']` is how much "
        "their optima agree (correlation at the best alignment, 1 = the same image).",
    ),
    (
        "code",
        'plain = cv.visualize_feature(bundle, "_blocks.8", 3, method="erhan", restarts=3, steps=48)\n'
        'lucid = cv.visualize_feature(bundle, "_blocks.8", 3, restarts=3, steps=48)\n'
        "display(cv.image_sheet([plain.images, lucid.images], columns=3))  # plain; Lucid\n"
        'plain.info["stability"], lucid.info["stability"]',
    ),
    (
        "markdown",
        "## 3. What a class looks like to the model\n\n"
        "Ascent of the class logit (not the probability) with Yosinski-style blur and decay.",
    ),
    (
        "code",
        "tabby = cv.visualize_class(bundle, 281, steps=60)\n"
        "display(tabby.to_pil())\n"
        "bundle.predict(bundle.preprocess(tabby.images), k=1)  # what the model sees in it",
    ),
    (
        "markdown",
        "## 4. What a layer keeps of the image (natural pre-images)\n\n"
        "Mahendran & Vedaldi: find an image whose representation at a layer matches the photo's, "
        "with a natural-image prior. Early layers keep the photo; deep ones keep what matters "
        "for the class.",
    ),
    (
        "code",
        'inversions = [cv.invert(bundle, x, layer, steps=(80, 15)) for layer in ("_blocks.2", "_blocks.10")]\n'
        '[r.info["feature_error"][0] for r in inversions]  # relative feature error',
    ),
    (
        "code",
        "photo = bundle.preprocess.denormalize(x)\n"
        "cv.image_sheet([photo] + [r.images for r in inversions])  # photo, _blocks.2, _blocks.10",
    ),
    (
        "markdown",
        "## 5. Amplify what the network sees: caricature and deep dream",
    ),
    (
        "code",
        'caricature = cv.caricature(bundle, x, "_blocks.5", steps=60)\n'
        'dream = cv.deep_dream(bundle, x, "_blocks.8", octaves=3, steps=6)\n'
        "cv.image_sheet([caricature.images, dream.images])",
    ),
    (
        "markdown",
        "## 6. Fooling the network\n\n"
        "A fooling image is noise the model calls a tabby with 99% confidence; an adversarial "
        "example changes the prediction by at most 2 grey levels per pixel.",
    ),
    (
        "code",
        "fool = cv.fooling_image(bundle, 281)\n"
        'fool.info["probability"], fool.info["steps_to_confidence"]',
    ),
    (
        "code",
        'attack = cv.adversarial(bundle, x, method="pgd", epsilon=2 / 255)\n'
        'before, after = attack.info["before"][0], attack.info["after"][0]\n'
        "(bundle.label(before[0]), round(before[1], 3)), (bundle.label(after[0]), round(after[1], 3))",
    ),
    (
        "markdown",
        "## 7. Style transfer\n\n"
        "Gatys et al.: keep the content features of the cat and the Gram matrices (style) of the "
        "coffee photo.",
    ),
    (
        "code",
        'coffee = bundle.preprocess(cv.sample_image("coffee"))\n'
        "cv.style_transfer(bundle, x, coffee, steps=60).to_pil()",
    ),
    (
        "markdown",
        "## 8. Live, in the widget\n\n"
        "`cv.Explorer(bundle)` has a *Feature visualization and synthesis* panel: click a tile of "
        "the filter grid, press Start and watch the image evolve with its objective curve; Stop, "
        "Resume, Reseed, Pin; *Visualize layer* fills a grid beside the activation grid.",
    ),
]


def main() -> None:
    write_notebook(CELLS, Path(__file__).with_name("synthesis.ipynb"))


if __name__ == "__main__":
    main()
