"""``relevant_features``: the responses pass (resumable, torchrun-sharded, like the unit atlas)
followed by the per-class lasso."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atlas.fingerprint import data_fingerprint, model_fingerprint
from ..capture import resolve_layer
from ..checks import check_flag, check_int, check_names, check_number
from ..dataset_pass import (
    PassSetup,
    PreparedItems,
    StopCheck,
    check_out_folder,
    check_unchanged,
    class_names,
    model_and_preprocess,
    process_group,
    run_pass,
)
from ..models import AnyPreprocess, ModelBundle
from .fit import fit_weights
from .responses import MANIFEST_FILE, POOLS, ResponseTable
from .result import RelevantFeatures


def conv_layers(module: nn.Module) -> list[str]:
    """Names of every ``nn.Conv2d`` in ``module``, in definition order."""
    return [name for name, sub in module.named_modules() if isinstance(sub, nn.Conv2d)]


def relevant_features(
    model: ModelBundle | nn.Module,
    data: Any,
    layers: Sequence[str] | None = None,
    *,
    mu: float = 10.0,
    pool: str = "l2sq",
    layer_norm: str = "l1",
    standardize: bool = False,
    per_class: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    num_workers: int = 0,
    out: str | Path | None = None,
    checkpoint_every: int = 20,
    progress: bool = True,
    should_stop: StopCheck | None = None,
    preprocess: AnyPreprocess | None = None,
) -> RelevantFeatures:
    """The filters relevant to each class (Oramas, Wang & Tuytelaars, ICLR 2019, Sec. 3.1;
    docs/interpretation.md says where each default comes from).

    1. **Responses.** One forward pass per batch over ``data`` (a map-style data set of
       (image, int label) pairs) on an eval view of the model; every filter of ``layers``
       (default: every ``nn.Conv2d``) gives one value per image, its map pooled by ``pool``:
       ``"l2sq"`` the sum of squares (the authors' released code), ``"l2"``, ``"mean"`` or
       ``"max"``. Stored as an N x m float32 table with the labels.
    2. **Features.** With ``layer_norm="l1"`` (the authors' code) each layer's responses are
       divided by their sum per image; then a class-balanced sample (``per_class`` images of
       every class, default the smallest class's count, drawn with ``seed``), standardized per
       column only with ``standardize=True`` (not in the authors' code: mu is a budget on the
       weights' sum, so its scale follows the features'; standardized features need mu about
       0.2 for the few filters per class that mu = 5-10 gives on the authors' features,
       docs/an8flower.md "Explanations scored").
    3. **Lasso.** Per class c: w_c = argmin ||Z w - l_c||^2 s.t. ||w_c||_1 <= ``mu``, w_c >= 0,
       l_c the centered 0/1 indicator of c (:func:`~.lasso.positive_lasso`, exact up to
       float rounding). ``mu=10`` is the authors' code's value (5 for an8Flower).

    Progress, stop and resume are the unit atlas's (:func:`cnnvis_widget.unit_atlas`): with
    ``out`` the responses are checkpointed every ``checkpoint_every`` batches; a call with the
    same model, data, layers and ``pool`` resumes a stopped pass (and gives the uninterrupted
    result) or reuses a finished one; ``should_stop(done, total)`` stops it (the result then
    has ``complete == False`` and no weights). Under torchrun each rank pools its shard and
    the rows are merged (every rank returns the whole result; rank 0 saves it). The lasso
    reruns on every call (seconds); its settings may change between calls on one ``out``.
    The model is never changed; a pass during which its weights change is refused.
    """
    module, prepare = model_and_preprocess(model, preprocess)
    names = conv_layers(module) if layers is None else check_names("layers", layers)
    if not names and layers is not None:
        raise ValueError(
            "layers= is empty; pass the names of layers giving channel maps, or None for every "
            "nn.Conv2d."
        )
    if not names:
        raise ValueError(
            f"{type(module).__name__} has no nn.Conv2d layers; pass layers= with the names of "
            "layers giving channel maps (see cv.layers(module, x))."
        )
    for name in names:
        resolve_layer(module, name)
    mu = check_number("mu", mu, low=0, low_open=True)
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)}; got {pool!r}.")
    if layer_norm not in ("l1", "none"):
        raise ValueError(f"layer_norm must be 'l1' or 'none'; got {layer_norm!r}.")
    check_flag("standardize", standardize)
    if per_class is not None:
        check_int("per_class", per_class, low=1)
    check_int("seed", seed, low=0)
    check_int("batch_size", batch_size, low=1)
    check_int("checkpoint_every", checkpoint_every, low=1)
    items = PreparedItems(data, prepare)
    total = len(items)
    if total == 0:
        raise ValueError("the data set is empty; pass a labelled data set with images.")
    first = items[0][0]
    fingerprints = (model_fingerprint(module), data_fingerprint(data, items))
    table = _resumable(out, names, pool, fingerprints) or ResponseTable(
        names, pool, total, *fingerprints
    )
    if not table.complete:
        _run_pass(module, table, items, names, pool, fingerprints, first, out, should_stop,
                  progress, batch_size, num_workers, checkpoint_every)  # fmt: skip
    settings = {"mu": mu, "layer_norm": layer_norm, "standardize": standardize,
                "per_class": per_class, "seed": seed}  # fmt: skip
    m = sum(table.channels.values())
    if not table.complete:
        empty = torch.zeros(0, m, dtype=torch.float64)
        return RelevantFeatures(table, [], empty, torch.zeros(m), torch.ones(m),
                                torch.zeros(0, dtype=torch.int64), settings,
                                class_names(data) or None)  # fmt: skip
    fit = fit_weights(table, mu, layer_norm, standardize, per_class, seed)
    result = RelevantFeatures(
        table, fit.classes, fit.weights, fit.mean, fit.scale, fit.sample, settings,
        class_names(data) or None,
    )  # fmt: skip
    if out is not None and process_group()[0] == 0:
        result.save(out)
    return result


def _run_pass(
    module: nn.Module, table: ResponseTable, items: PreparedItems, names: list[str], pool: str,
    fingerprints: tuple[str, str], first: torch.Tensor, out: str | Path | None,
    should_stop: StopCheck | None, progress: bool, batch_size: int, num_workers: int,
    checkpoint_every: int,
) -> None:  # fmt: skip
    setup = PassSetup.of(
        module, names, first, batch_size, num_workers, checkpoint_every, "responses"
    )

    def shard_of(folder: Path | None, images: int) -> ResponseTable:
        saved = _resumable(folder, names, pool, fingerprints)
        return saved or ResponseTable(names, pool, images, *fingerprints)

    run_pass(table, items, setup, out, progress, should_stop, shard_of)
    check_unchanged(module, fingerprints[0], out, "responses")


def _resumable(
    out: str | Path | None, names: list[str], pool: str, fingerprints: tuple[str, str]
) -> ResponseTable | None:
    """The responses saved in ``out`` for this very pass, to resume or reuse; None when there
    are none; those of another model, data, layers or pooling are refused."""
    check_out_folder(out)
    if out is None or not (Path(out) / MANIFEST_FILE).is_file():
        return None
    table = ResponseTable.load(
        out, model_fingerprint=fingerprints[0], data_fingerprint=fingerprints[1]
    )
    if table.layers != names or table.pool != pool:
        raise ValueError(
            f"{out} holds responses of layers {table.layers} pooled by {table.pool!r}; this call "
            f"asks for {names} with {pool!r}. Pass another out= folder, or the same settings."
        )
    return table
