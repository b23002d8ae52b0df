"""Writes tour.ipynb (run it after editing the cells below; the notebook is committed)."""

from pathlib import Path

import nbformat

CELLS = [
    (
        "markdown",
        "# cnnvis-widget tour\n\nOpen a CNN, look at what each layer sees, and ask where it looks for a class. "
        "Everything runs offline: EfficientNet-Lite0 with its real ImageNet weights and scikit-image's photos.",
    ),
    (
        "code",
        'import cnnvis_widget as cv\n\nbundle = cv.load_model()  # EfficientNet-Lite0, ImageNet weights\nimg = cv.sample_image("cat")\nx = bundle.preprocess(img)  # (1, 3, 224, 224)\nbundle.predict(x, k=3)',
    ),
    (
        "markdown",
        "## The Explorer\n\nClick a class to see its Grad-CAM; pick a layer on the left to see every channel's activation; "
        "click a tile to enlarge it over the image. Opacity and colormap act in the browser. Try another sample or upload a photo.",
    ),
    ("code", "explorer = cv.Explorer(bundle, img)\nexplorer"),
    ("markdown", "## The same from plain Python"),
    (
        "code",
        "[(info.name, info.type, info.output_shape) for info in cv.layers(bundle.module, x)][:8]",
    ),
    (
        "code",
        'cam = cv.attribute(bundle.module, x, "gradcam", target=281)  # tabby, at the last conv stage\ncv.upsample(cam, bundle.input_size).shape',
    ),
    (
        "markdown",
        "## Feature visualization and synthesis\n\nThe panel under the Explorer runs these live "
        "(pick a tile, then Start). From Python each returns images in [0, 1] and the objective per step.",
    ),
    (
        "code",
        '# 4 channels of one layer, optimized in one batch\nfeature = cv.visualize_feature(bundle, "_blocks.4", [0, 5, 11, 17], steps=64)\nfeature.to_pil()',
    ),
    (
        "code",
        'attack = cv.adversarial(bundle, x, epsilon=2 / 255)  # FGSM, 2 grey levels\n[bundle.label(c) for c, _ in attack.info["before"] + attack.info["after"]]',
    ),
    (
        "code",
        'resnet = cv.load_model("resnet18", pretrained=False)  # any torchvision classifier, random weights\ncv.Explorer(resnet, cv.sample_image("coffee"))',
    ),
]


def write_notebook(cells: list[tuple[str, str]], path: Path) -> None:
    """Write ``cells`` ((kind "code" | "markdown", source) pairs) as a notebook without outputs."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for kind, source in cells:
        make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        notebook.cells.append(make(source))
    nbformat.write(notebook, path)


def main() -> None:
    write_notebook(CELLS, Path(__file__).with_name("tour.ipynb"))


if __name__ == "__main__":
    main()
