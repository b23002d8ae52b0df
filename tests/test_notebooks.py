"""The teaching notebook runs from top to bottom and shows what it says."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def generated(name: str, script: str) -> nbformat.NotebookNode:
    """notebooks/<name>.ipynb, checked to hold exactly the cells of notebooks/<script>.py."""
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        module = importlib.import_module(script)
    finally:
        sys.path.pop(0)
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert [cell.source for cell in notebook.cells] == [source for _, source in module.CELLS]
    return notebook


def executed_code(name: str, timeout: int = 600) -> list[nbformat.NotebookNode]:
    """The code cells of notebooks/<name>.ipynb after running it top to bottom (no errors)."""
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    ).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors, errors
    return code


def test_synthesis_notebook_is_generated_from_its_script() -> None:
    generated("synthesis", "make_synthesis")


@pytest.mark.slow
def test_synthesis_notebook_runs_and_shows_images() -> None:
    code = executed_code("synthesis")
    images = [cell for cell in code if any("image/png" in o.get("data", {}) for o in cell.outputs)]
    assert len(images) >= 8  # every sheet of images is displayed
    fooling = next(cell for cell in code if "fooling_image" in cell.source)
    shown = fooling.outputs[0]["data"]["text/plain"]
    probability = float(shown.split("[")[1].split("]")[0])
    assert probability >= 0.99


def test_units_notebook_is_generated_from_its_script() -> None:
    notebook = generated("units", "make_units")
    assert all(not cell.get("outputs") for cell in notebook.cells)  # committed without outputs


@pytest.mark.slow
def test_units_notebook_runs_and_shows_the_units() -> None:
    code = executed_code("units")

    def shows(cell, kind: str) -> bool:
        return any(kind in o.get("data", {}) for o in cell.outputs)

    def printed(needle: str) -> str:
        return next(cell for cell in code if needle in cell.source).outputs[-1]["text"]

    sheets = [cell for cell in code if "cv.examples_sheet(" in cell.source]
    assert len(sheets) == 4 and all(shows(cell, "image/png") for cell in sheets)
    plots = [cell for cell in code if "plt.show()" in cell.source]
    assert len(plots) == 3 and all(shows(cell, "image/png") for cell in plots)
    assert "10,000 images, 2 layers" in printed("cv.unit_atlas(net")
    # the reloaded atlas equals the computed one, and a second call with out= reads it back
    reload = printed("UnitAtlas.load")
    assert "reloaded 10,000 images; same top-k for every unit: True" in reload
    seconds = float(reload.split("again: ")[1].split(" s")[0])
    assert seconds < 10 and "complete: True" in reload
    # a deeper unit's top examples share a class more often, as the text says
    shares = {
        line.split(":")[0]: float(line.split(": ")[1].split(" of 9")[0])
        for line in printed("top_class_share").strip().splitlines()
    }
    assert 1 <= shares["features.relu3"] < shares["features.relu5"] <= 9
    below = printed("histogram.bins")
    assert 0.5 < float(below.split("%")[0]) / 100 < 1
    assert "273 photos" in printed("cv.datasets.photos()")
    widget = next(cell for cell in code if "cv.Explorer(" in cell.source)
    assert shows(widget, "application/vnd.jupyter.widget-view+json")


def test_dissection_notebook_is_generated_from_its_script() -> None:
    notebook = generated("dissection", "make_dissection")
    assert all(not cell.get("outputs") for cell in notebook.cells)  # committed without outputs


@pytest.mark.slow
def test_dissection_notebook_runs_and_shows_the_detectors() -> None:
    code = executed_code("dissection", timeout=900)

    def shows(cell, kind: str) -> bool:
        return any(kind in o.get("data", {}) for o in cell.outputs)

    def printed(needle: str) -> str:
        cell = next(cell for cell in code if needle in cell.source)
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")

    assert "2,440 images; concepts per category: {'color': 11" in printed("per_category")
    assert shows(next(cell for cell in code if "SWATCH" in cell.source), "image/png")
    assert printed("concepts.summary()").count("fewest:") == 3
    images = int(printed("cv.dissect(").split(" images")[0])
    assert 0 < images < 2440
    # per layer: the printed unique concepts are as many as summary() counts, and the
    # detectors' count is at least the unique count
    summary = printed("result.summary()")
    heads = [line for line in summary.splitlines() if not line.startswith(" ")]
    assert [line.split(":")[0] for line in heads] == ["_blocks.3", "_blocks.15"]
    for head in heads:
        counts = ast.literal_eval(head.split("unique detectors ")[1])  # summary()'s dict
        detectors = int(head.split(": ")[1].split(" detectors")[0])
        block = summary.split(head + "\n")[1].splitlines()[: len(counts)]
        names = {row.split(" (")[0].strip(): row.split("): ")[1].split(", ") for row in block}
        assert {c: len(n) if n != ["-"] else 0 for c, n in names.items()} == counts
        assert detectors >= sum(counts.values())
    assert shows(next(cell for cell in code if "result.summary()" in cell.source), "image/png")
    best = printed("result.detectors(layer)[:6]")
    ious = [float(line.split("IoU ")[1]) for line in best.splitlines() if "IoU" in line]
    assert ious and all(iou > 0.04 for iou in ious)
    segments = next(cell for cell in code if "unit_segments(" in cell.source)
    assert shows(segments, "image/png")
    assert "dissection.html:" in printed("result.to_html(")
    found = printed('result.find("red")').splitlines()
    assert found[0] == "0 red detectors"  # no colour detector: "red" is not "checkered"
    assert len(found) > 1
    for line in found[1:]:
        assert "dotted" in line.split(": ")[1] and float(line.split("IoU ")[1]) > 0.04
    widget = next(cell for cell in code if "cv.Explorer(" in cell.source)
    assert shows(widget, "application/vnd.jupyter.widget-view+json")


def test_interpretation_notebook_is_generated_from_its_script() -> None:
    notebook = generated("interpretation", "make_interpretation")
    assert all(not cell.get("outputs") for cell in notebook.cells)


@pytest.mark.slow
def test_interpretation_notebook_runs_and_explains() -> None:
    code = executed_code("interpretation", timeout=900)

    def shows(cell, kind: str) -> bool:
        return any(kind in o.get("data", {}) for o in cell.outputs)

    def printed(needle: str) -> str:
        cell = next(cell for cell in code if needle in cell.source)
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")

    assert shows(next(c for c in code if "an8flower(" in c.source), "image/png")
    # a few relevant filters for each of the six classes, weights within the budget mu = 5
    lines = printed("cv.relevant_features(").splitlines()
    assert len(lines) == 6
    for line in lines:
        count = int(line.split(": ")[1].split(" relevant")[0])
        weights = [float(w.split(")")[0]) for w in line.split("(")[1:]]
        assert 1 <= count <= 5 and len(weights) == count and sum(weights) <= 5 + 1e-6
    assert shows(next(c for c in code if "average_visualizations(" in c.source), "image/png")
    # the explanation's mass lies mostly on the center, the part that decides the class
    scores = printed("def mass_on_part")
    mass = float(scores.split("interpretation: mass on the center ")[1].split(",")[0])
    assert mass > 0.5, scores
    assert shows(next(c for c in code if "why = cv.explain(" in c.source), "image/png")
    widget = next(c for c in code if "cv.Explorer(" in c.source)
    assert shows(widget, "application/vnd.jupyter.widget-view+json")
    # empirical fields: three layers; the deepest one's is smaller than its theoretical field
    rows = [r for r in printed("cv.empirical_fields(").splitlines() if r.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == [
        "features.relu2", "features.relu3", "features.relu4"
    ]  # fmt: skip
    assert float(rows[-1].split("|")[-2]) < 1
    assert shows(next(c for c in code if "cv.empirical_receptive_field(" in c.source), "image/png")
