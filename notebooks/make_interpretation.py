"""Writes interpretation.ipynb, the notebook on explanation by interpretation (Oramas et al.) and
empirical receptive fields (Zhou et al.) (run it after editing the cells below; the notebook is
committed without outputs and executed by tests/test_notebooks.py)."""

from pathlib import Path

from make_tour import write_notebook

CELLS = [
    (
        "markdown",
        "# Which filters make a class, and what part of the image does a unit really use?\n"
        "\n"
        "Two analyses over a data set (docs/interpretation.md, docs/empirical_receptive_field.md):\n"
        "\n"
        "- **Explanation by interpretation** (Oramas, Wang & Tuytelaars, ICLR 2019): find, without extra annotation, the few internal filters relevant to each class (a non-negative lasso with an L1 budget on every filter's pooled response), show their average visualizations, and explain a prediction by the relevant filters that fired.\n"
        "- **Empirical receptive fields** (Zhou et al., ICLR 2015): slide a noise patch over a unit's top images and see where it changes the unit; the region is much smaller than the theoretical field.\n"
        "\n"
        "Everything runs offline on a small CNN trained on an8Flower, synthetic flowers whose class is the colour of their center, so the part that decides the class is known exactly. On two CPU cores the notebook takes 2 to 3 minutes.",
    ),
    (
        "markdown",
        "## 1. The data and the model\n"
        "\n"
        "`cv.datasets.an8flower()` (docs/an8flower.md) draws each flower from its index: six classes, the colour of the center; petals, leaves and background take colours that no class uses. `mask(i)` is the center's exact mask. `flower_cnn` (four convolutions) is trained on it and ships with the package.",
    ),
    (
        "code",
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n"
        "from torch.utils.data import Subset\n"
        "\n"
        "import cnnvis_widget as cv\n"
        "\n"
        'bundle = cv.load_model("flower_cnn")\n'
        'train, test = cv.datasets.an8flower("train"), cv.datasets.an8flower("test")\n'
        "fit_on = Subset(train, range(0, len(train), 5))  # 600 images, 100 per class\n"
        'print(f"{len(train)} train, {len(test)} test images; classes: {train.classes}")\n'
        "fig, axes = plt.subplots(1, 6, figsize=(12, 2.4))\n"
        "for label, ax in enumerate(axes):\n"
        "    index = next(i for i in range(len(test)) if test[i][1] == label)\n"
        "    ax.imshow(test[index][0])\n"
        '    ax.contour(test.mask(index), levels=[0.5], colors="white", linewidths=1)\n'
        "    ax.set_title(train.classes[label], fontsize=9)\n"
        '    ax.axis("off")',
    ),
    (
        "markdown",
        "## 2. The relevant filters of each class\n"
        "\n"
        "One pass over the images pools every convolution filter's map into one number (the sum of squares, each layer's values divided by their sum, as the authors' code). Per class, a lasso with non-negative weights whose sum is at most `mu` fits the class indicator; the filters with a weight are that class's relevant filters.",
    ),
    (
        "code",
        "relevant = cv.relevant_features(bundle, fit_on, mu=5, progress=False)\n"
        "for label in relevant.classes:\n"
        "    found = relevant.relevant(label)\n"
        '    listed = ", ".join(f"{f.layer} #{f.channel} ({f.weight:.2f})" for f in found)\n'
        '    print(f"{train.classes[label]}: {len(found)} relevant: {listed}")',
    ),
    (
        "markdown",
        "Their **average visualizations**: each filter's DeconvNet projection (with the stride fix) on its top images of the class, averaged. Grey is 0; the colours are the projection's signed values per colour channel, not the image's colours. Each average is a blob where the flowers' centers lie: the filter looks at the center.",
    ),
    (
        "code",
        "averages = cv.average_visualizations(bundle, relevant, fit_on, k=10)\n"
        "keys = sorted(averages.maps)\n"
        "fig, axes = plt.subplots(1, len(keys), figsize=(2 * len(keys), 2.4), squeeze=False)\n"
        "for ax, key in zip(axes[0], keys, strict=True):\n"
        "    image = averages.maps[key].permute(1, 2, 0).numpy()\n"
        "    ax.imshow(np.clip(0.5 + 0.5 * image / max(np.abs(image).max(), 1e-8), 0, 1))\n"
        '    ax.set_title(f"{train.classes[key[0]]}\\n{key[1]} #{key[2]}", fontsize=8)\n'
        '    ax.axis("off")',
    ),
    (
        "markdown",
        "## 3. Why this class? Explanations against the ground truth\n"
        "\n"
        "`cv.explain` predicts the class, keeps its relevant filters that fired on the image (weight x response > 0, the top 3), and combines their projections into a heatmap. The center's mask tells how much of it lies on the part that decides the class; Grad-CAM and guided backpropagation for comparison (docs/an8flower.md has the full table over 300 test images).",
    ),
    (
        "code",
        "def mass_on_part(heatmap, mask):\n"
        "    h = np.abs(cv.upsample(heatmap.reshape(1, 1, *heatmap.shape[-2:]), mask.shape)[0, 0].numpy())\n"
        "    return float(h[mask].sum() / max(h.sum(), 1e-12))\n"
        "\n"
        "\n"
        'scores = {name: [] for name in ("interpretation", "gradcam", "guided_backprop")}\n'
        "picks = list(range(0, 60, 6))\n"
        "for index in picks:\n"
        "    image, label = test[index]\n"
        "    x, mask = bundle.preprocess(image), test.mask(index)\n"
        "    maps = {\n"
        '        "interpretation": cv.explain(bundle, relevant, x).heatmap,\n'
        '        "gradcam": cv.attribute(bundle.module, x, "gradcam", layer="features.relu4")[0, 0],\n'
        '        "guided_backprop": cv.attribute(bundle.module, x, "guided_backprop")[0].abs().sum(0),\n'
        "    }\n"
        "    for name, heat in maps.items():\n"
        "        scores[name].append(\n"
        "            (mass_on_part(heat, mask), cv.datasets.pointing_game(heat.numpy(), mask))\n"
        "        )\n"
        "share = float(np.mean([test.mask(i).mean() for i in picks]))\n"
        'print(f"the center covers {100 * share:.1f} % of an image")\n'
        "for name, rows in scores.items():\n"
        "    mass, hits = np.mean(rows, axis=0)\n"
        '    print(f"{name}: mass on the center {mass:.2f}, pointing game {hits:.2f}")',
    ),
    (
        "code",
        "index = picks[1]\n"
        "image, label = test[index]\n"
        "why = cv.explain(bundle, relevant, bundle.preprocess(image), averages=averages)\n"
        "fig, axes = plt.subplots(1, 2 + len(why.filters), figsize=(3 * (2 + len(why.filters)), 3))\n"
        "axes[0].imshow(image)\n"
        'axes[0].set_title(f"predicted: {train.classes[why.predicted]}", fontsize=9)\n'
        "axes[1].imshow(image)\n"
        'axes[1].imshow(why.heatmap.numpy(), cmap="inferno", alpha=0.6)\n'
        'axes[1].contour(test.mask(index), levels=[0.5], colors="cyan", linewidths=1)\n'
        'axes[1].set_title("heatmap (cyan: the center)", fontsize=9)\n'
        "for ax, item in zip(axes[2:], why.filters, strict=True):\n"
        "    average = item.average.permute(1, 2, 0).numpy()\n"
        "    ax.imshow(np.clip(0.5 + 0.5 * average / max(np.abs(average).max(), 1e-8), 0, 1))\n"
        '    ax.set_title(f"{item.filter.layer} #{item.filter.channel}\\nscore {item.score:.2f}", fontsize=8)\n'
        "for ax in axes:\n"
        '    ax.axis("off")',
    ),
    (
        "markdown",
        "## 4. In the Explorer\n"
        "\n"
        "With `interpretation=` the Explorer adds a **Why this class?** panel: the predicted class, the heatmap over the image, and the relevant filters that fired as tiles with their average visualizations; a tile opens the unit's card when an atlas covers its layer. The card's **Empirical field** button measures that unit's empirical field (section 5) in the background.",
    ),
    (
        "code",
        "# the unit cards' atlas, on the same images as the relevant filters (one data= for both)\n"
        'layers = ["features.relu2", "features.relu3", "features.relu4"]\n'
        "atlas = cv.unit_atlas(bundle, fit_on, layers, k=4, progress=False)\n"
        "explorer = cv.Explorer(\n"
        "    bundle,\n"
        "    test[picks[1]][0],\n"
        "    interpretation=relevant,\n"
        "    data=fit_on,\n"
        "    averages=averages,\n"
        "    atlas=atlas,\n"
        '    layer="features.relu4",\n'
        ")\n"
        "explorer",
    ),
    (
        "markdown",
        "## 5. Empirical receptive fields\n"
        "\n"
        "For a few units per layer: an 11 x 11 noise patch slides over each unit's top images (stride 3); the change of the unit's activation at its peak, re-centred on the peak and averaged over the images, is the unit's empirical field. Its size (the region above half its maximum) against the theoretical field's:",
    ),
    (
        "code",
        "fields = cv.empirical_fields(bundle, atlas, fit_on, layers, sample=2, k=2, progress=False)\n"
        "print(fields.to_markdown(units=False))\n"
        "fields.plot()",
    ),
    (
        "markdown",
        "The 11 px occluder cannot resolve a field smaller than itself (the first layer's theoretical field is 8 px): there the empirical size is the occluder's. Deeper, the empirical field stays small while the theoretical one grows, as Zhou et al. found. One unit's averaged discrepancy map, with both fields:",
    ),
    (
        "code",
        "field = cv.empirical_receptive_field(\n"
        '    bundle, "features.relu4", fields.rows[-1].unit, atlas=atlas, data=fit_on, k=3, progress=False\n'
        ")\n"
        "(cy, cx), (th, tw) = field.centre, field.theoretical_size\n"
        'plt.imshow(field.mean_map, cmap="inferno")\n'
        "plt.gca().add_patch(\n"
        '    plt.Rectangle((cx - tw / 2, cy - th / 2), tw, th, fill=False, edgecolor="cyan", linestyle="--")\n'
        ")\n"
        'plt.title(f"empirical {field.size[0]} x {field.size[1]} px, theoretical {th} x {tw} px")\n'
        'plt.axis("off");',
    ),
]


def main() -> None:
    write_notebook(CELLS, Path(__file__).with_name("interpretation.ipynb"))


if __name__ == "__main__":
    main()
