"""Writes units.ipynb, the notebook on what single units respond to over a data set (run it
after editing the cells below; the notebook is committed without outputs and executed by
tests/test_notebooks.py)."""

from pathlib import Path

from make_tour import write_notebook

CELLS = [
    (
        "markdown",
        "# What does each unit respond to?\n\n"
        "A feature map's channel (a *unit*) is easier to understand from the images that drive "
        "it most than from its weights. `cv.unit_atlas` runs a model once over a data set and "
        "keeps, for every unit of the chosen layers, its top-k images (with where in the map "
        "its maximum was), the histogram of its per-image maxima and its mean response per "
        "class. Everything here runs offline; on two CPU cores the notebook takes 3 to 5 "
        "minutes.",
    ),
    (
        "markdown",
        "## 1. Fashion-MNIST and a small CNN\n\n"
        "The whole test split (10,000 images of 28 x 28) through `fashion_cnn`, two layers: "
        "`features.relu3` (32 units on a 14 x 14 map) and `features.relu5` (64 units on 7 x 7). "
        "The pass takes about half a minute on two CPU cores; `out=` saves the atlas in a folder "
        "as it goes (section 1.5 loads it back).",
    ),
    (
        "code",
        "import tempfile\n"
        "import time\n"
        "from pathlib import Path\n\n"
        "import matplotlib.pyplot as plt\n\n"
        "import cnnvis_widget as cv\n\n"
        'fashion = cv.datasets.fashion_mnist(split="test")\n'
        'net = cv.load_model("fashion_cnn")\n'
        'folder = Path(tempfile.mkdtemp()) / "fashion-atlas"\n'
        'layers = ["features.relu3", "features.relu5"]\n'
        "start = time.perf_counter()\n"
        "atlas = cv.unit_atlas(net, fashion, layers, k=9, batch_size=256, out=folder, progress=False)\n"
        'print(f"{atlas.images:,} images, {len(atlas.layers)} layers in {time.perf_counter() - start:.0f} s")',
    ),
    (
        "markdown",
        "### 1.1 A unit's top examples\n\n"
        "`cv.examples_sheet` draws one row per unit: its 9 best images, each cropped to the "
        "unit's receptive field around the position of its maximum (for `relu3`, 10 x 10 of "
        "the 28 x 28 pixels, grey where it reaches past the border) with the unit's activation "
        "over it (yellow = as strong as the unit's best example). Under each crop: the class "
        "and the unit's value (with the image's index in the data set).",
    ),
    ("code", 'cv.examples_sheet(net, atlas, fashion, "features.relu3", [4, 25, 10, 22])'),
    (
        "markdown",
        "These early units are local stroke detectors: unit 4 a bright diagonal band (sandal "
        "straps), unit 25 a thin curved edge (bag handles, sandal soles), unit 10 a vertical "
        "edge between bright and dark, unit 22 a corner. They fire on any class that has the "
        "stroke.",
    ),
    (
        "markdown",
        "### 1.2 A deeper layer\n\n"
        "Two convolutions and a pooling later, a `relu5` unit sees 24 x 24 of the 28 x 28 "
        "pixels (its receptive field; grey again where it reaches past the border), and its "
        "examples are nearly whole garments.",
    ),
    ("code", 'cv.examples_sheet(net, atlas, fashion, "features.relu5", [36, 48, 53, 28])'),
    (
        "markdown",
        "Unit 36 wants the stripes on a sneaker's side, unit 48 the gap between trouser legs, "
        "unit 53 the open straps of a sandal, unit 28 a narrow top over a wide bottom (dresses, "
        "and bags by their handle). Across all units, a deeper unit's top examples share one "
        "class far more often:",
    ),
    (
        "code",
        "from collections import Counter\n\n\n"
        "def top_class_share(layer):\n"
        '    """Per unit: how many of its top-9 images are of its most common class."""\n'
        "    return [\n"
        "        Counter(int(fashion.targets[e.index]) for e in atlas.top(layer, unit)).most_common(1)[0][1]\n"
        "        for unit in range(atlas.stats[layer].units)\n"
        "    ]\n\n\n"
        "for layer in atlas.layers:\n"
        "    shares = top_class_share(layer)\n"
        "    pure = sum(share == 9 for share in shares)\n"
        "    print(\n"
        '        f"{layer}: {sum(shares) / len(shares):.1f} of 9 top images share a class on average; "\n'
        '        f"{pure} of {len(shares)} units have all 9 of one class"\n'
        "    )",
    ),
    (
        "markdown",
        "### 1.3 Which classes drive a unit\n\n"
        "`atlas.summary(layer)['class_means']` (classes x units) is each unit's mean response "
        "(spatially averaged) per class, over every image, not only the top 9.",
    ),
    (
        "code",
        'early, deep = atlas.summary("features.relu3"), atlas.summary("features.relu5")\n'
        "fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)\n"
        "for ax, summary, title, unit in (\n"
        '    (axes[0], early, "features.relu3", 4),\n'
        '    (axes[1], deep, "features.relu5", 48),\n'
        "):\n"
        '    ax.barh(fashion.classes, summary["class_means"][:, unit], color="#4c78a8")\n'
        '    ax.set_title(f"{title}, unit {unit}")\n'
        '    ax.set_xlabel("mean response")\n'
        "ax.invert_yaxis()\n"
        "plt.tight_layout()\n"
        "plt.show()",
    ),
    (
        "markdown",
        "Unit 4 of `relu3` responds to every class, sandals (many straps) only about 1.5 times "
        "as much as the rest; unit 48 of `relu5` responds to trousers more than 3 times as "
        "much as to any other class.",
    ),
    (
        "markdown",
        "### 1.4 How often a unit fires: the histogram of its per-image maxima\n\n"
        "`atlas.stats[layer].histogram.bins(unit)` gives the histogram of the unit's maximum "
        "over the map, one value per image (exact, with bins that coarsen as the range grows). "
        "The top-9 examples are the far right tail. Unit 48 has two bumps: the right one "
        "(above about 2.5) is the trousers (about 9 in 10 of those images are trousers, and "
        "most trousers are there).",
    ),
    (
        "code",
        'edges, counts = atlas.stats["features.relu5"].histogram.bins(48)\n'
        'top9 = [e.value for e in atlas.top("features.relu5", 48)]\n'
        "fig, ax = plt.subplots(figsize=(7, 2.8))\n"
        'ax.stairs(counts.numpy(), edges.numpy(), fill=True, color="#4c78a8")\n'
        'ax.axvline(top9[-1], color="#d62728", label="9th best image")\n'
        'ax.set_yscale("log")\n'
        'ax.set_xlabel("max of unit 48 (features.relu5) over the map")\n'
        'ax.set_ylabel("images")\n'
        "ax.legend()\n"
        "plt.show()\n"
        "below = float(counts[edges[1:] <= top9[0] / 2].sum() / counts.sum())\n"
        'print(f"{below:.0%} of the images stay below half the best value ({top9[0]:.2f})")',
    ),
    (
        "markdown",
        "### 1.5 Saving and reloading\n\n"
        "With `out=`, the atlas was saved to `folder` (`atlas.pt`: tensors only, "
        "`atlas.json`: the layers, k and fingerprints of the model and data). "
        "`cv.UnitAtlas.load` reads it back; `cv.unit_atlas` with the same `out=`, model and "
        "data returns the saved one without a new pass (a stopped pass resumes).",
    ),
    (
        "code",
        "reloaded = cv.UnitAtlas.load(folder)\n"
        "same = all(\n"
        "    reloaded.top(layer, unit) == atlas.top(layer, unit)\n"
        "    for layer in atlas.layers\n"
        "    for unit in range(atlas.stats[layer].units)\n"
        ")\n"
        "start = time.perf_counter()\n"
        "again = cv.unit_atlas(net, fashion, layers, k=9, out=folder, progress=False)\n"
        "elapsed = time.perf_counter() - start\n"
        'print(f"reloaded {reloaded.images:,} images; same top-k for every unit: {same}")\n'
        'print(f"unit_atlas(..., out=folder) again: {elapsed:.1f} s, complete: {again.complete}")',
    ),
    (
        "markdown",
        "## 2. Photos and EfficientNet-Lite0\n\n"
        "The same on 273 labelled photos (`cv.datasets.photos()`, 23 classes such as "
        "`animal/bird` or `plant/flower`) and EfficientNet-Lite0 with its ImageNet weights, "
        "at a middle block (`_blocks.4`, 40 units, 28 x 28 map) and a late one (`_blocks.10`, "
        "112 units, 14 x 14). The pass takes one to two minutes on two CPU cores (224 x 224 "
        "inputs through a much larger network).",
    ),
    (
        "code",
        "photos = cv.datasets.photos()\n"
        "model = cv.load_model()  # EfficientNet-Lite0, ImageNet weights\n"
        "start = time.perf_counter()\n"
        'photo_atlas = cv.unit_atlas(model, photos, ["_blocks.4", "_blocks.10"], k=9, progress=False)\n'
        'print(f"{photo_atlas.images} photos in {time.perf_counter() - start:.0f} s")',
    ),
    (
        "markdown",
        "Units picked by looking at the sheets of every unit. In `_blocks.4` the receptive "
        "field is a patch of the photo: unit 0 likes thin dark lines on a light ground (birds' "
        "legs, twigs), unit 11 regular grids and printed text (guitar frets, labels), unit 14 "
        "small dark discs with a rim (eyes, wheels, buttons).",
    ),
    (
        "code",
        'cv.examples_sheet(model, photo_atlas, photos, "_blocks.4", [0, 11, 14], crop_size=80)',
    ),
    (
        "markdown",
        "In `_blocks.10` a unit sees the whole photo and its theme is an object: unit 98 "
        "flowers (round, radial petals), unit 28 land vehicles, unit 81 standing four-legged "
        "mammals (bears, cows, horses, lions). Unit 70 has no single theme in its top 9 "
        "(colourful, textured things: fruit, parrots, a mandrill's face).",
    ),
    (
        "code",
        'cv.examples_sheet(model, photo_atlas, photos, "_blocks.10", [98, 28, 81, 70], crop_size=80)',
    ),
    (
        "markdown",
        "The top examples show a unit's peaks; its mean response per class (averaged over "
        "each whole photo) is another view. Unit 70's class means, with the photos' class "
        "names (the number of photos in brackets: a class of one or three photos is noisy), "
        "single out fruit:",
    ),
    (
        "code",
        'means = photo_atlas.summary("_blocks.10")["class_means"][:, 70]\n'
        'counts = photo_atlas.stats["_blocks.10"].classes.counts\n'
        'order = means.nan_to_num(float("-inf")).argsort(descending=True)[:8].tolist()\n'
        "fig, ax = plt.subplots(figsize=(7, 3))\n"
        "ax.barh(\n"
        '    [f"{photos.classes[c]} ({int(counts[c])})" for c in order],\n'
        "    means[order],\n"
        '    color="#4c78a8",\n'
        ")\n"
        "ax.invert_yaxis()\n"
        'ax.set_xlabel("mean response of unit 70 (_blocks.10)")\n'
        "plt.tight_layout()\n"
        "plt.show()",
    ),
    (
        "markdown",
        "## 3. In the widget\n\n"
        "Give the Explorer the atlas and its data set; click a tile of the filter grid to open "
        "that unit's card (its top crops, the histogram of its maxima with this image marked, "
        "and the classes that drive it), or call `explorer.show_unit(unit)` from Python.",
    ),
    (
        "code",
        'flower = photos[photo_atlas.top("_blocks.10", 98)[0].index][0]\n'
        'explorer = cv.Explorer(model, flower, atlas=photo_atlas, data=photos, layer="_blocks.10")\n'
        "explorer.show_unit(98)\n"
        "explorer",
    ),
]


def main() -> None:
    write_notebook(CELLS, Path(__file__).with_name("units.ipynb"))


if __name__ == "__main__":
    main()
