"""Writes dissection.ipynb, the notebook on Network Dissection: labelling units with human
concepts (run it after editing the cells below; the notebook is committed without outputs and
executed by tests/test_notebooks.py)."""

from pathlib import Path

from make_tour import write_notebook

CELLS = [
    (
        "markdown",
        "# Which units detect a human concept?\n\n"
        "Network Dissection (Bau et al., CVPR 2017) labels a unit with the concept whose "
        "pixels its strongest activations cover: each unit's map is thresholded at its top "
        "0.5 % level over a data set, upsampled, and compared with every concept's mask by "
        "intersection over union (IoU) summed over the data set. A unit whose best IoU is above "
        "0.04 is a *detector* of that concept. `cv.dissect` does this for the layers you name "
        "(docs/dissection.md). Everything here runs offline; on two CPU cores the notebook "
        "takes 3 to 4 minutes, the dissection itself (section 2) 2 to 3.",
    ),
    (
        "markdown",
        "## 1. The concept set\n\n"
        "`cv.datasets.concepts()` (docs/concepts.md) is a probe set built on this machine: "
        "photos with a pasted object cut-out (mask: the cut-out's alpha), with a texture tiled "
        "into a region or over the whole image, and every pixel named with one of 11 basic "
        "colour terms. It is built once (about 80 s) and then read from the cache.",
    ),
    (
        "code",
        "import time\n\n"
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n"
        "from torch.utils.data import Subset\n\n"
        "import cnnvis_widget as cv\n\n"
        "concepts = cv.datasets.concepts(progress=False)\n"
        "table = concepts.concepts\n"
        "per_category = {c: sum(x.category == c for x in table.concepts) for c in table.categories}\n"
        'print(f"{len(concepts):,} images; concepts per category: {per_category}")',
    ),
    (
        "markdown",
        "One image of each kind, with its label maps (112 x 112, half the image's side): the "
        "colour names drawn in a swatch of their colour, and the object's or texture's mask "
        "(white). A whole-image texture has no map: its label holds for every pixel.",
    ),
    (
        "code",
        "SWATCH = {\n"
        '    "black": (0, 0, 0), "blue": (40, 80, 220), "brown": (130, 80, 30),\n'
        '    "grey": (128, 128, 128), "green": (40, 160, 40), "orange": (250, 150, 0),\n'
        '    "pink": (250, 160, 200), "purple": (130, 40, 160), "red": (220, 30, 30),\n'
        '    "white": (255, 255, 255), "yellow": (250, 230, 30),\n'
        "}  # fmt: skip\n"
        'kinds = ["object", "texture", "whole texture"]\n'
        "picks = [concepts.kinds.index(kind) for kind in kinds]\n"
        "fig, axes = plt.subplots(len(picks), 3, figsize=(9, 9))\n"
        "for row, index in zip(axes, picks, strict=True):\n"
        "    image, labels = concepts[index]\n"
        '    colour = labels.pixels["color"][0]\n'
        "    swatches = np.zeros((*colour.shape, 3), np.uint8)\n"
        "    for label in np.unique(colour[colour > 0]):\n"
        "        swatches[colour == label] = SWATCH[table[int(label)].name]\n"
        '    category = "object" if "object" in labels.categories else "texture"\n'
        "    if category in labels.pixels:\n"
        "        mask = labels.pixels[category][0]\n"
        "        name = table[int(mask.max())].name\n"
        "    else:  # whole-image label\n"
        "        mask = np.ones_like(colour)\n"
        "        name = table[labels.whole[category][0]].name\n"
        "    row[0].imshow(image)\n"
        '    row[0].set_title(f"#{index}: {concepts.kinds[index]}")\n'
        "    row[1].imshow(swatches)\n"
        '    row[1].set_title("color")\n'
        '    row[2].imshow(mask > 0, cmap="gray", vmin=0, vmax=1)\n'
        '    row[2].set_title(f"{category}: {name}")\n'
        "    for ax in row:\n"
        '        ax.axis("off")\n'
        "plt.tight_layout()\n"
        "plt.show()",
    ),
    (
        "markdown",
        "How much of each concept the set holds, in labelled pixels at mask resolution (a "
        "whole-image label counts 112 x 112): IoU is unreliable for a concept with few pixels.",
    ),
    (
        "code",
        "rows = concepts.summary()\n"
        "for category in table.categories:\n"
        '    part = sorted((r for r in rows if r["category"] == category), key=lambda r: -r["pixels"])\n'
        "    shown = \", \".join(f\"{r['name']} {r['pixels']:,}\" for r in part[:5])\n"
        "    print(f\"{category}: {shown}, ... fewest: {part[-1]['name']} {part[-1]['pixels']:,}\")",
    ),
    (
        "markdown",
        "## 2. Dissecting EfficientNet-Lite0\n\n"
        "Two layers of Lite0 (ImageNet weights): `_blocks.3` (40 units on a 28 x 28 map) and "
        "the last block `_blocks.15` (320 units on 7 x 7). To keep the notebook short, every "
        "10th image of the set (a `torch.utils.data.Subset`, all kinds in proportion); the "
        "full set takes about ten times as long. `cv.dissect` makes two passes: the first finds "
        "each unit's threshold (and its top images), the second tallies the IoUs. Add "
        '`out="some/folder"` to save the passes as they go and resume.',
    ),
    (
        "code",
        "part = Subset(concepts, range(0, len(concepts), 10))\n"
        "bundle = cv.load_model()  # EfficientNet-Lite0, ImageNet weights\n"
        'layers = ["_blocks.3", "_blocks.15"]\n'
        "start = time.perf_counter()\n"
        "result = cv.dissect(bundle, part, layers, progress=False)\n"
        'print(f"{result.images} images, {len(layers)} layers in {time.perf_counter() - start:.0f} s")',
    ),
    (
        "markdown",
        "### 2.1 Unique detectors per layer\n\n"
        "The paper's measure of a layer's interpretability is its number of *unique detectors*: "
        "distinct concepts with at least one detector, per category (`result.summary()`).",
    ),
    (
        "code",
        "for layer, counts in result.summary().items():\n"
        "    found = result.detectors(layer)\n"
        "    print(\n"
        '        f"{layer}: {len(found)} detectors of {len(result.units(layer))} units; "\n'
        '        f"unique detectors {counts}"\n'
        "    )\n"
        "    for category in table.categories:\n"
        "        names = sorted({row.concept for row in found if row.category == category})\n"
        "        print(f\"  {category} ({len(names)}): {', '.join(names) or '-'}\")\n"
        "result.plot()",
    ),
    (
        "markdown",
        "### 2.2 The best detectors\n\n"
        "`result.detectors(layer)`: the units whose best IoU is above 0.04, best first, each "
        "with its concept, category and IoU (`result.units(layer)` has every unit; "
        "`result.iou(layer)` the whole units x concepts matrix).",
    ),
    (
        "code",
        "for layer in layers:\n"
        "    print(layer)\n"
        "    for row in result.detectors(layer)[:6]:\n"
        '        print(f"  unit {row.unit:3d}: {row.concept} ({row.category}), IoU {row.iou:.3f}")',
    ),
    (
        "markdown",
        "### 2.3 What a detector segments\n\n"
        "The best unit of `_blocks.15` on its top images of the data (the first pass keeps "
        "them): outside the region where its upsampled map is above its threshold the image "
        "is dimmed, the region's border is drawn.",
    ),
    (
        "code",
        "from cnnvis_widget.dissection.card import unit_segments\n"
        "from cnnvis_widget.dissection.html import segmented\n\n"
        'best = result.detectors("_blocks.15")[0]\n'
        "segments = unit_segments(bundle, result, best.layer, best.unit)\n\n\n"
        "def array(payload):\n"
        '    return np.frombuffer(payload["data"], np.uint8).reshape(payload["shape"])\n\n\n'
        'images, masks = array(segments["images"]), array(segments["masks"])\n'
        "fig, axes = plt.subplots(1, 6, figsize=(12, 2.4))\n"
        "for ax, image, mask in zip(axes, images, masks, strict=False):  # 6 of the top 10\n"
        "    ax.imshow(segmented(image, mask))\n"
        '    ax.axis("off")\n'
        'fig.suptitle(f"{best.layer} unit {best.unit}: {best.concept}, IoU {best.iou:.3f}")\n'
        "plt.show()",
    ),
    (
        "markdown",
        "The same for every unit of both layers, as one self-contained HTML file to open in a "
        "browser (`result.to_html`; here the 8 best units of each layer, with their top 5 "
        "images):",
    ),
    (
        "code",
        "import tempfile\n"
        "from pathlib import Path\n\n"
        'report = result.to_html(Path(tempfile.mkdtemp()) / "dissection.html", bundle, units_per_layer=8)\n'
        'print(f"{report.name}: {report.stat().st_size / 1e6:.1f} MB")',
    ),
    (
        "markdown",
        "### 2.4 Finding units by concept\n\n"
        "`result.find(text)`: the detectors, of every layer, whose concept has a word starting "
        'with the text (or whose category is it: `result.find("texture")`). These two layers '
        'have no colour detector (section 2.1), so `result.find("red")` is empty (it does not '
        'match "checkered"); the dotted-texture detectors:',
    ),
    (
        "code",
        'print(len(result.find("red")), "red detectors")\n'
        'for row in result.find("dotted"):\n'
        '    print(f"{row.layer} unit {row.unit}: {row.concept}, IoU {row.iou:.3f}")',
    ),
    (
        "markdown",
        "## 3. In the Explorer\n\n"
        "With `dissection=result`, the filter grid of a dissected layer captions each detector's "
        "tile with its concept, a box above the grid filters the tiles by concept or category, "
        "and a tile's card shows the unit's label and its segmentation of its top images.",
    ),
    (
        "code",
        'image = concepts.image(concepts.kinds.index("object"))\n'
        'cv.Explorer(bundle, image, dissection=result, layer="_blocks.15")',
    ),
]


def main() -> None:
    write_notebook(CELLS, Path(__file__).with_name("dissection.ipynb"))


if __name__ == "__main__":
    main()
