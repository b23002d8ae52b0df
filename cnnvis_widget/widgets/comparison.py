"""The comparison panel: 2-6 maps side by side for the current image and class, each with its
deletion / insertion score, computed cell by cell on the panel's job channel."""

from __future__ import annotations

from typing import Any

import traitlets

from ..methods import METHODS
from ..protocol import ComparisonCell, ParamValue, comparison_cell, message
from .channel import JobChannel, JobEnd, Report, Update
from .overlay import OverlayTraits
from .panel import Change, Host, Panel, traits_of
from .traits import optional_dict


class ComparisonTraits(traitlets.HasTraits):
    """The comparison's synced traits (docs/protocol.md)."""

    compare_methods = traitlets.List(traitlets.Unicode()).tag(sync=True)
    compare_layers = traitlets.List(traitlets.Unicode()).tag(sync=True)
    comparison = traitlets.List(traitlets.Dict()).tag(sync=True)
    compare_job = optional_dict()


class ComparisonPanel(Panel):
    messages = ("compare", "cancel")

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.traits = traits_of(host, ComparisonTraits)
        # The overlay's method is compared with the picker's settings, at its layer.
        self.overlay = traits_of(host, OverlayTraits)
        self.jobs = JobChannel(host, "compare_job")

    def channels(self) -> list[JobChannel]:
        return [self.jobs]

    def on_message(self, content: dict[str, Any]) -> None:
        if content.get("type") == "compare":
            self.compare()
        elif content.get("job") == self.jobs.job_trait:
            self.jobs.cancel()

    def on_image(self, target: int) -> Change:
        self.jobs.forget()  # its maps were for the previous image
        # maps of another image: not to be drawn over this one
        return Change({"comparison": [], "compare_job": None})

    def compare(self, methods: list[str] | None = None, layers: list[str] | None = None) -> None:
        """Compute the cells of ``methods`` x ``layers`` (default: the ``compare_methods`` /
        ``compare_layers`` traits) in the background; see :meth:`Explorer.compare`."""
        host, traits = self.host, self.traits
        session = host.session
        try:
            if methods is not None or layers is not None:
                with host.applying():
                    traits.compare_methods = list(methods if methods is not None else [])
                    traits.compare_layers = list(layers if layers is not None else [])
            fallback = self.overlay.overlay_layer or session.default_cam_layer()
            items = session.comparison_items(
                list(traits.compare_methods), list(traits.compare_layers), fallback
            )
        except ValueError as error:
            host.message = message("error", str(error))
            raise
        target, x = host.selected_class, session.input
        # The method in the picker uses the picker's settings; the others their defaults.
        picked, picked_params = self.overlay.method, self.overlay.method_params
        settings: list[dict[str, ParamValue]] = [
            dict(picked_params) if m == picked else {} for m, _ in items
        ]
        rows: list[ComparisonCell] = [
            comparison_cell(METHODS[method], layer, target, params)
            for (method, layer), params in zip(items, settings, strict=True)
        ]

        def work(report: Report) -> Update:
            for index, (method, layer) in enumerate(items):
                rows[index] = {**rows[index], "state": "running"}
                if not report({"comparison": list(rows)}, index / len(items)):
                    break

                def within_cell(_partial: Any, fraction: float, index: int = index) -> bool:
                    # Progress (and a chance to stop) inside a long cell; the cells are
                    # unchanged, so only compare_job travels.
                    return report(None, (index + fraction) / len(items))

                cell = session.comparison_cell(
                    method, target, layer, settings[index], x=x, on_step=within_cell
                )
                rows[index] = {**rows[index], **cell, "state": "done"}
                if not report({"comparison": list(rows)}, (index + 1) / len(items)):
                    break
            return {"comparison": list(rows)}

        with host.applying():
            traits.comparison = [{**row, "state": "queued"} for row in rows]
            host.assign(self.jobs.starting("comparison"))
            if host.message and host.message.get("level") == "error":
                host.message = None
        self.jobs.start("comparison", work, self._finish)

    def _finish(self, end: JobEnd[Update]) -> Update:
        if end.state == "done":
            return dict(end.result or {})
        # Read where updates are applied, after the job's earlier updates: read in the worker
        # thread, the cells could still lack ones finished just before the stop.
        unfinished = "stopped" if end.state == "cancelled" else "failed"
        cells = [
            row if row.get("state") == "done" else {**row, "state": unfinished}
            for row in self.traits.comparison
        ]
        return {"comparison": cells}
