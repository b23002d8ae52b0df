"""The units panel: a unit's card (what one channel responds to over a data set) from a unit
atlas, opened by clicking its tile in the filter grid.

The atlas is given (``Explorer(..., atlas=atlas, data=data)``) or computed over ``data`` in the
background on the panel's job channel (``atlas_job``: progress and Stop), one layer at a time:
the selected layer at the start, another one when asked (``{"type": "atlas"}`` or
:meth:`UnitsPanel.compute`). A stopped pass keeps its statistics in a folder and resumes
from there when it is started again.

The card's empirical receptive field (``{"type": "field"}``) is computed on its own channel
(``field_job``) and kept per unit: see :mod:`cnnvis_widget.widgets.field`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import traitlets

from ..atlas import UnitAtlas, unit_atlas
from ..atlas.card import unit_card
from ..atlas.fingerprint import model_fingerprint
from ..atlas.result import MANIFEST_FILE
from ..capture import LayerRef
from ..dissection import DissectionResult
from ..dissection.card import unit_segments, unit_tags
from ..models import ModelBundle
from ..preprocess import WholeImage
from ..protocol import AtlasLayer, UnitCard, UnitTag, message
from ..receptive_field import ReceptiveField, receptive_field
from .channel import JobChannel, JobEnd, Report, Update
from .field import UnitFields
from .panel import Change, Host, Panel, traits_of
from .traits import optional_dict

PROGRESS_INTERVAL_S = 0.25


class UnitsTraits(traitlets.HasTraits):
    """The units panel's synced traits (docs/protocol.md)."""

    # images in the data set atlases are computed on (0: none given, the panel is hidden)
    atlas_images = traitlets.Int(0).tag(sync=True)
    atlas_layers = traitlets.List(traitlets.Dict()).tag(sync=True)
    atlas_job = optional_dict()
    unit_card = optional_dict()
    # the selected layer's units' dissection labels, one per channel (empty: no dissection)
    unit_labels = traitlets.List(traitlets.Dict()).tag(sync=True)
    # the open card's empirical receptive field (widgets/field.py), and the job computing one
    unit_field = optional_dict()
    field_job = optional_dict()


@dataclass
class UnitData:
    """What the Explorer was given for its units panel: atlases (their layers do not
    overlap) and the data set they were computed on; ``folder`` keeps passes computed here
    (to resume a stopped one)."""

    atlases: list[UnitAtlas] = field(default_factory=list)
    data: Any = None
    k: int = 9
    folder: Path | None = None
    dissection: DissectionResult | None = None

    def atlas_of(self, layer: str) -> UnitAtlas | None:
        """The user's atlas of ``layer`` (given or computed here)."""
        for atlas in self.atlases:
            if layer in atlas.stats:
                return atlas
        return None

    def source_of(self, layer: str) -> tuple[UnitAtlas, Any] | None:
        """The atlas a card of ``layer`` is made from, with its data: the user's, else the
        dissection's first pass over the concept data."""
        atlas = self.atlas_of(layer)
        if atlas is not None:
            return atlas, self.data
        found = self.dissection
        if found is not None and found.atlas is not None and layer in found.layers:
            return found.atlas, found.data
        return None

    def tags(self, layer: str) -> list[UnitTag]:
        """``layer``'s units' dissection labels (none without a dissection of it)."""
        if self.dissection is None or layer not in self.dissection.layers:
            return []
        return unit_tags(self.dissection, layer)

    @property
    def images(self) -> int:
        """Images of the data the cards come from (0: no data, the panel is hidden)."""
        if self.data is not None:
            return len(self.data)
        if self.dissection is not None and self.dissection.data is not None:
            return len(self.dissection.data)
        return 0

    @property
    def layers(self) -> list[AtlasLayer]:
        """The covered layers as the ``atlas_layers`` trait shows them."""
        rows: list[AtlasLayer] = [
            {"name": layer, "images": atlas.images, "complete": atlas.complete}
            for atlas in self.atlases
            for layer in atlas.layers
        ]
        if self.dissection is not None:
            mine = {row["name"] for row in rows}
            rows += [
                {"name": layer, "images": self.dissection.images, "complete": True}
                for layer in self.dissection.layers
                if layer not in mine
            ]
        return rows


def unit_data(
    bundle: ModelBundle,
    atlas: UnitAtlas | None,
    data: Any,
    k: int,
    dissection: DissectionResult | None = None,
) -> UnitData:
    """Check the Explorer's ``atlas`` / ``data`` arguments against its model: an atlas needs
    the data it was computed on (its crops are those images), and both must be the ones it
    was computed on (fingerprints)."""
    if atlas is not None and not isinstance(atlas, UnitAtlas):
        raise TypeError(
            f"atlas must be a cv.UnitAtlas (from cv.unit_atlas or cv.UnitAtlas.load); got "
            f"{type(atlas).__name__}."
        )
    if atlas is not None and data is None:
        raise ValueError(
            "Explorer(..., atlas=atlas) also needs data=: the data set the atlas was computed "
            "on (its top examples are shown as crops of those images)."
        )
    if dissection is not None:
        if not isinstance(dissection, DissectionResult):
            raise TypeError(
                f"dissection must be the result of cv.dissect; got {type(dissection).__name__}."
            )
        if dissection.atlas is not None and (
            dissection.atlas.model_fingerprint != model_fingerprint(bundle.module)
        ):
            raise ValueError(
                "this dissection was computed on another model (or other weights); run "
                "cv.dissect on this one."
            )
    if data is None:
        return UnitData(k=k, dissection=dissection)
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__") or len(data) == 0:
        raise TypeError(
            "data must be a non-empty map-style data set (len() and data[i] giving an image or "
            "(image, label)), e.g. cv.datasets.fashion_mnist(split='test')."
        )
    if atlas is not None:
        atlas.check_source(bundle.module, data, bundle.preprocess)
    folder = Path(tempfile.mkdtemp(prefix="cnnvis-atlas-"))
    atlases = [atlas] if atlas is not None else []
    return UnitData(atlases, data, atlas.k if atlas else k, folder, dissection)


class UnitsPanel(Panel):
    """Builds ``unit_card`` for the selected channel of the selected layer; computes atlases
    on ``atlas_job``. Reads the host's ``unit_data`` (a :class:`UnitData`, set by the
    Explorer from its ``atlas`` / ``data`` arguments; none: the panel has no atlas)."""

    messages = ("atlas", "field", "cancel")

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.traits = traits_of(host, UnitsTraits)
        self.units: UnitData = getattr(host, "unit_data", None) or UnitData()
        self.jobs = JobChannel(host, "atlas_job", PROGRESS_INTERVAL_S)
        self._fields: dict[tuple[str, tuple[int, ...]], ReceptiveField | None] = {}
        self.empirical = UnitFields(host, self._shown_card, PROGRESS_INTERVAL_S)
        if self.units.images:  # without data a tile click stays a display change
            host.watch(["selected_channel"], self._on_channel)

    def channels(self) -> list[JobChannel]:
        return [self.jobs, self.empirical.jobs]

    def on_message(self, content: dict[str, Any]) -> None:
        kind = content.get("type")
        if kind == "atlas":
            self.compute(str(content.get("layer") or self.host.selected_layer))
        elif kind == "field":
            card = self._shown_card()
            layer = str(content.get("layer") or (card[0] if card else self.host.selected_layer))
            unit = content.get("unit", card[1] if card else self.host.selected_channel)
            self.compute_field(layer, int(unit))
        elif content.get("job") == self.jobs.job_trait:
            self.jobs.cancel()
        elif content.get("job") == self.empirical.jobs.job_trait:
            self.empirical.jobs.cancel()

    def on_image(self, target: int) -> Change:
        card = self.traits.unit_card
        if card is None:
            return Change()
        return Change({"unit_card": self.card(card["layer"], card["unit"])})

    def on_layer(self, layer: str) -> Change:
        return Change(
            {"unit_card": None, "unit_field": None, "unit_labels": self.units.tags(layer)}
        )

    def _on_channel(self, change: dict[str, Any]) -> None:
        unit, layer = int(change["new"]), self.host.selected_layer
        if unit < 0 or self.units.source_of(layer) is None:
            self.traits.unit_card = None
            self.traits.unit_field = None
            return
        card = self.card(layer, unit)
        with self.host.applying():
            self.host.assign({"unit_card": card, "unit_field": self.empirical.of(layer, unit)})

    def _shown_card(self) -> tuple[str, int] | None:
        card = self.traits.unit_card
        return None if card is None else (card["layer"], card["unit"])

    def compute_field(self, layer: str, unit: int) -> None:
        """Compute the empirical receptive field of channel ``unit`` of ``layer`` over its
        top atlas images (at most ``FIELD_TOP_K``, the card's first examples) in the
        background (``field_job``: progress, Stop), on the data the card's atlas was computed
        on; kept for the session and shown on the unit's card (``unit_field``)."""
        source = self.units.source_of(layer)
        if source is None:
            raise ValueError(
                f"no atlas covers {layer}: compute one first (the panel's button, or "
                f"explorer.compute_atlas({layer!r}))."
            )
        # as the card: the dissection's pass saw each concept image whole
        from_dissection = self.units.atlas_of(layer) is None
        bundle = self.host.session.bundle
        prepare = WholeImage(bundle.preprocess) if from_dissection else None
        self.empirical.compute(layer, unit, *source, prepare)

    def card(self, layer: str, unit: int) -> UnitCard:
        """The card of channel ``unit`` of ``layer`` for the current image."""
        source = self.units.source_of(layer)
        if source is None:
            raise ValueError(
                f"no atlas covers {layer}: compute one (the panel's button, or "
                f"explorer.compute_atlas({layer!r})) or pass Explorer(..., atlas=...)."
            )
        x, bundle = self.host.session.input, self.host.session.bundle
        dissection = self.units.dissection
        from_dissection = self.units.atlas_of(layer) is None
        # the dissection's pass saw each concept image whole: its maxima are placed on that
        prepare = WholeImage(bundle.preprocess) if from_dissection else None
        card = unit_card(bundle, *source, layer, unit, x, self._field(layer, x), preprocess=prepare)
        if dissection is not None and layer in dissection.layers:
            card["dissection"] = unit_segments(bundle, dissection, layer, unit)
        return card

    def _field(self, layer: str, x: torch.Tensor) -> ReceptiveField | None:
        key = (layer, tuple(x.shape))
        if key not in self._fields:
            spatial = self.host.session.layer(layer).spatial
            module = self.host.session.bundle.module
            self._fields[key] = receptive_field(module, layer, x) if spatial else None
        return self._fields[key]

    def compute(self, layer: str) -> None:
        """Run the dataset pass for ``layer`` in the background (resuming a stopped one)."""
        units, host = self.units, self.host
        if units.data is None:
            raise ValueError(
                "this Explorer has no data set to compute an atlas on: pass "
                "Explorer(..., data=dataset), e.g. cv.datasets.fashion_mnist(split='test')."
            )
        name = LayerRef.parse(layer).name
        done = units.atlas_of(name)
        if done is not None and done.complete:
            return
        bundle = host.session.bundle
        folder = (units.folder or Path(tempfile.mkdtemp())) / name.replace("/", "_")

        def work(report: Report) -> UnitAtlas:
            def should_stop(done: int, total: int) -> bool:
                return not report(None, done / total)

            return unit_atlas(
                bundle, units.data, [name], units.k, out=folder, progress=False,
                should_stop=should_stop, checkpoint_every=5,
            )  # fmt: skip

        def finish(end: JobEnd[UnitAtlas]) -> Update:
            atlas = end.result
            if end.state == "cancelled" and (folder / MANIFEST_FILE).is_file():
                atlas = UnitAtlas.load(folder)  # what the stopped pass saved: shown, resumable
            if atlas is None:
                return {}
            units.atlases = [a for a in units.atlases if name not in a.stats] + [atlas]
            self.empirical.forget_layer(name)  # other top images: its fields no longer hold
            update: Update = {"atlas_layers": units.layers}
            if host.selected_layer == name and host.selected_channel >= 0:
                update["unit_card"] = self.card(name, host.selected_channel)
                update["unit_field"] = None
            if not atlas.complete:
                done = f"{atlas.images} of {atlas.total}"
                update["message"] = message(
                    "info",
                    f"the atlas of {name} stopped after {done} images; its cards show those. "
                    "Compute it again to resume.",
                )
            return update

        with host.applying():
            host.assign(self.jobs.starting(f"atlas of {name}"))
        self.jobs.start(f"atlas of {name}", work, finish)
