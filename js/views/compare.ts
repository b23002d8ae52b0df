/**
 * Side-by-side comparison: pick methods (checkboxes) and, for layer methods, layers; the
 * kernel computes 2-6 maps for the current image and class in the background (custom message
 * `{type: "compare"}`), each shown over the image with its deletion / insertion scores.
 */
import { composite, heatByMax, heatPixel, mapFrom } from "../canvas";
import { type Decoded, decodeOptional } from "../codecs";
import { getLut, SIGNED_COLORMAP } from "../colormaps";
import { h, setText } from "../dom";
import { comparisonCount, comparisonHint, scoreText } from "../jobs";
import { classLabel } from "../labels";
import { validMethods } from "../methods";
import type { ArrayStore } from "../store";
import type { ComparisonRow, ExplorerModel, MethodInfo, View } from "../types";
import { createJobProgress } from "./jobProgress";
import { mapNote } from "./overlay";

const decodedMaps = new WeakMap<object, Decoded | null>();

function decodeRowMap(row: ComparisonRow): Decoded | null {
  const payload = row.map;
  if (payload === null || typeof payload !== "object") return null;
  if (!decodedMaps.has(payload)) {
    let value: Decoded | null = null;
    try {
      value = decodeOptional(payload);
    } catch {
      value = null;
    }
    decodedMaps.set(payload, value);
  }
  return decodedMaps.get(payload) ?? null;
}

const CELL_STATES: Record<string, string> = {
  queued: "queued",
  running: "computing…",
  stopped: "stopped",
  failed: "failed",
};

/** "default settings" or "steps 400, baseline 0.5": what a cell was computed with. */
export function settingsText(params: unknown): string {
  if (params === null || typeof params !== "object") return "default settings";
  const entries = Object.entries(params as Record<string, unknown>);
  if (entries.length === 0) return "default settings";
  return entries.map(([name, value]) => `${name} ${String(value)}`).join(", ");
}

function stringList(raw: unknown): string[] {
  return Array.isArray(raw) ? raw.filter((v): v is string => typeof v === "string") : [];
}

export function createCompare(model: ExplorerModel, arrays: ArrayStore): View {
  const picks = h("div", { class: "cv-compare-picks", "data-testid": "compare-picks" });
  const layerSelect = h("select", {
    class: "cv-select cv-compare-layers",
    multiple: true,
    size: 4,
    "data-testid": "compare-layers",
    "aria-label": "layers for layer methods",
  });
  const hint = h("span", { class: "cv-muted", "data-testid": "compare-hint" });
  const run = h(
    "button",
    { class: "cv-button", type: "button", "data-testid": "compare-run" },
    "Compare",
  );
  const progress = createJobProgress(model, "compare_job", "compare");
  const heading = h("div", { class: "cv-muted", "data-testid": "compare-heading" });
  const cells = h("div", { class: "cv-compare-cells", "data-testid": "compare-cells" });
  const el = h(
    "details",
    { class: "cv-compare", "data-testid": "compare" },
    h("summary", {}, "Compare methods side by side"),
    picks,
    h(
      "div",
      { class: "cv-controls" },
      h("label", { class: "cv-field" }, h("span", {}, "Layers (layer methods)"), layerSelect),
      run,
      hint,
    ),
    progress.el,
    heading,
    cells,
  );

  let methods: MethodInfo[] = [];
  let methodsRaw: unknown;
  let picksKey = "";
  let layersKey = "";
  let cellsKey: unknown[] = [];

  picks.addEventListener("change", () => {
    const chosen = [...picks.querySelectorAll<HTMLInputElement>("input:checked")].map(
      (input) => input.value,
    );
    model.set("compare_methods", chosen);
    model.save_changes();
  });
  layerSelect.addEventListener("change", () => {
    model.set(
      "compare_layers",
      [...layerSelect.selectedOptions].map((o) => o.value),
    );
    model.save_changes();
  });
  run.addEventListener("click", () => model.send({ type: "compare" }));

  function syncPicks(chosen: string[]): void {
    const key = methods.map((m) => m.name).join("|");
    if (key !== picksKey) {
      picksKey = key;
      picks.replaceChildren(
        ...methods.map((m) =>
          h(
            "label",
            { class: "cv-compare-pick", title: m.cost },
            h("input", {
              type: "checkbox",
              value: m.name,
              "data-testid": `compare-pick-${m.name}`,
            }),
            m.title,
          ),
        ),
      );
    }
    for (const input of picks.querySelectorAll<HTMLInputElement>("input")) {
      input.checked = chosen.includes(input.value);
    }
  }

  function syncLayers(chosen: string[]): void {
    const spatial = (model.get("layers") ?? []).filter((l) => l?.spatial === true);
    const key = spatial.map((l) => l.name).join("|");
    if (key !== layersKey) {
      layersKey = key;
      layerSelect.replaceChildren(
        ...spatial.map((l) => h("option", { value: l.name }, `${l.name} (${l.type})`)),
      );
    }
    for (const option of layerSelect.options) option.selected = chosen.includes(option.value);
  }

  function drawCells(rows: ComparisonRow[]): void {
    const image = arrays.get("image");
    const opacity = model.get("opacity");
    const userLut = getLut(model.get("colormap") ?? "viridis");
    const sign = model.get("map_sign") === "signed" ? "signed" : "absolute";
    cells.replaceChildren(
      ...rows.map((row) => {
        const canvas = h("canvas", { class: "cv-compare-canvas", width: 160, height: 160 });
        const decoded = decodeRowMap(row);
        const map = decoded === null ? null : mapFrom(decoded);
        const heat = map === null ? null : row.signed ? heatPixel(map, sign) : heatByMax(map);
        const note = mapNote(row.map);
        composite(canvas, image, heat, opacity, heat?.signed ? getLut(SIGNED_COLORMAP) : userLut);
        const title = row.layer ? `${row.title} @ ${row.layer}` : row.title;
        return h(
          "figure",
          {
            class: "cv-compare-cell",
            "data-testid": "compare-cell",
            "data-method": row.method,
            "data-layer": row.layer,
            "data-state": row.state,
            "data-deletion": typeof row.deletion === "number" ? row.deletion : null,
            "data-insertion": typeof row.insertion === "number" ? row.insertion : null,
          },
          canvas,
          h(
            "figcaption",
            {},
            h("strong", {}, title),
            row.state === "done" ? null : ` · ${CELL_STATES[row.state] ?? row.state}`,
            h("br"),
            scoreText(row.deletion, row.insertion),
            h("br"),
            h("span", { class: "cv-muted" }, settingsText(row.params)),
            note === "" ? null : h("br"),
            note === ""
              ? null
              : h("span", { class: "cv-map-note", "data-testid": "map-note", role: "note" }, note),
          ),
        );
      }),
    );
  }

  return {
    el,
    update() {
      const raw = model.get("methods");
      if (raw !== methodsRaw) {
        methodsRaw = raw;
        methods = validMethods(raw);
      }
      const chosen = stringList(model.get("compare_methods"));
      const layers = stringList(model.get("compare_layers"));
      syncPicks(chosen);
      syncLayers(layers);
      const verdict = comparisonHint(comparisonCount(methods, chosen, layers));
      setText(hint, verdict.text);
      run.disabled = !verdict.ok;
      progress.update();
      const rows = model.get("comparison");
      // Cells are redrawn when their maps or how maps are drawn changed.
      const key = [rows, model.get("map_sign"), model.get("colormap"), model.get("opacity")];
      if (key.some((k, i) => k !== cellsKey[i])) {
        cellsKey = key;
        drawCells(Array.isArray(rows) ? rows : []);
      }
      const target = Array.isArray(rows) ? rows[0]?.target : undefined;
      const stale = typeof target === "number" && target !== model.get("selected_class");
      cells.dataset.stale = String(stale);
      setText(
        heading,
        typeof target !== "number"
          ? ""
          : `for “${classLabel(model, target)}” (class ${target})` +
              (stale ? " — not the class selected now: press Compare again to update" : ""),
      );
    },
  };
}
