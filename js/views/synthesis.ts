/**
 * Synthesis panel: pick a kind (channel visualization, class model, pre-image, caricature,
 * deep dream, fooling image, adversarial example) with a form generated from `synth_kinds`,
 * then Start / Stop / Resume / Reseed / Pin. Frames of the running optimization are drawn as
 * they stream in (`synthesis`), with the objective curve; the adversarial view shows the
 * original, the magnified perturbation, the adversarial image and both predictions. "Visualize
 * layer" fills a feature-visualization grid ordered tile for tile like the activation grid
 * (its elements, `featureGrid` and `featureControls`, are placed beside and above that grid).
 * Actions travel as custom messages `{type: "synth", action}`.
 */
import { drawImage, drawImageAt } from "../canvas";
import { decodeOptional } from "../codecs";
import { formatNumber, h, setText } from "../dom";
import { jobView } from "../jobs";
import { paramControls } from "../methods";
import { curvePoints, imageAt, predictionText, sideBySide, validKinds } from "../synthesis";
import type { ExplorerModel, View } from "../types";
import { channelOrder } from "./filterGrid";
import { controlElement, type ParamInput, paramNote, readParamChange, showValue } from "./methods";
import { createTileSheet } from "./tileSheet";

const CURVE_W = 220;
const CURVE_H = 60;
const SVG = "http://www.w3.org/2000/svg";

type Payload = Record<string, unknown> | null;

/** Under the objective curve: what it plots, the step reached, and the latest value. */
function curveText(
  payload: Record<string, unknown>,
  values: ArrayLike<number> | undefined,
): string {
  const name = String(payload.trace_name ?? "objective");
  const last = values && values.length > 0 ? values[values.length - 1] : undefined;
  const step = `step ${String(payload.step ?? 0)} of ${String(payload.total ?? "?")}`;
  return last === undefined ? `${name} · ${step}` : `${name} · ${step} · now ${formatNumber(last)}`;
}

function button(testid: string, text: string, title: string): HTMLButtonElement {
  return h("button", { class: "cv-button", type: "button", "data-testid": testid, title }, text);
}

export interface SynthesisView extends View {
  /** The layer's feature-visualization grid, shown beside the activation grid. */
  readonly featureGrid: HTMLElement;
  /** Its Visualize layer / Stop buttons and progress, shown above both grids. */
  readonly featureControls: HTMLElement;
}

export function createSynthesis(model: ExplorerModel): SynthesisView {
  const select = h("select", {
    class: "cv-select cv-synth-kind",
    "data-testid": "synth-kind",
    "aria-label": "synthesis kind",
  });
  const form = h("div", { class: "cv-method-params", "data-testid": "synth-params" });
  const note = paramNote("synth-params-note");
  const start = button("synth-start", "Start", "start the optimization");
  const stop = button("synth-stop", "Stop", "stop at the next step");
  const resume = button("synth-resume", "Resume", "continue a stopped channel visualization");
  const reseed = button("synth-reseed", "Reseed", "start again from a new random seed");
  const pin = button("synth-pin", "Pin", "keep this result below");
  const layerButton = button(
    "synth-layer",
    "Visualize layer",
    "every channel of the selected layer, batched",
  );
  const layerStop = button("synth-layer-stop", "Stop", "stop the layer's feature visualization");
  const status = h("div", { class: "cv-job-text", "data-testid": "synth-status" });
  const canvas = h("canvas", { class: "cv-synth-canvas", "data-testid": "synth-canvas" });
  const caption = h("div", { class: "cv-muted", "data-testid": "synth-label" });
  const polyline = document.createElementNS(SVG, "polyline");
  polyline.setAttribute("class", "cv-synth-line");
  const curve = document.createElementNS(SVG, "svg");
  curve.setAttribute("viewBox", `0 0 ${CURVE_W} ${CURVE_H}`);
  curve.setAttribute("class", "cv-synth-curve");
  curve.setAttribute("data-testid", "synth-curve");
  curve.appendChild(polyline);
  const curveLabel = h("div", { class: "cv-muted" });
  const curveBox = h("div", {}, curve as unknown as HTMLElement, curveLabel);
  const advCanvases = [0, 1, 2].map(() => h("canvas", { class: "cv-synth-canvas" }));
  const advBefore = h("div", { "data-testid": "synth-before" });
  const advAfter = h("div", { "data-testid": "synth-after" });
  const adversarial = h(
    "div",
    { class: "cv-synth-adv", "data-testid": "synth-adversarial", hidden: true },
    ...["original", "perturbation (magnified)", "adversarial"].map((title, i) =>
      h("figure", {}, advCanvases[i] as HTMLCanvasElement, h("figcaption", {}, title)),
    ),
    h("div", { class: "cv-synth-preds" }, advBefore, advAfter),
  );
  const live = h(
    "div",
    { class: "cv-synth-live", "data-testid": "synth-live" },
    h("div", {}, canvas, caption),
    curveBox,
    adversarial,
  );
  const pins = h("div", { class: "cv-synth-pins", "data-testid": "synth-pins" });
  const gridStatus = h("div", { class: "cv-job-text", "data-testid": "feature-grid-status" });
  const grid = h("div", {
    class: "cv-grid cv-synth-grid",
    "data-testid": "feature-grid",
    "data-count": "0",
    hidden: true,
  });
  const sheet = createTileSheet(grid);

  const el = h(
    "details",
    { class: "cv-synth", "data-testid": "synthesis", open: true },
    h("summary", {}, "Feature visualization and synthesis"),
    h(
      "div",
      { class: "cv-controls" },
      h("label", { class: "cv-field" }, h("span", {}, "Synthesize"), select),
      start,
      stop,
      resume,
      reseed,
      pin,
    ),
    form,
    note,
    status,
    live,
    pins,
  );
  const featureControls = h(
    "div",
    { class: "cv-controls cv-feature-controls" },
    layerButton,
    layerStop,
    gridStatus,
    sheet.canvas,
  );

  let inputs: ParamInput[] = [];
  let formKey: unknown[] = [];
  let shownSynthesis: unknown;
  let shownPins: unknown;
  let shownGrid: unknown[] = [];
  let gridTiles: HTMLElement[] = [];
  let gridLayer = "";
  let selectedTile: HTMLElement | null = null;

  const send = (action: string, extra: Record<string, unknown> = {}) =>
    model.send({ type: "synth", action, ...extra });
  start.addEventListener("click", () => send("start"));
  stop.addEventListener("click", () => {
    stop.disabled = true;
    send("stop");
  });
  resume.addEventListener("click", () => send("resume"));
  reseed.addEventListener("click", () => send("reseed"));
  pin.addEventListener("click", () => send("pin"));
  layerButton.addEventListener("click", () => send("layer"));
  layerStop.addEventListener("click", () => send("stop_layer"));
  // A click on a feature tile picks the channel, as a click on its activation tile does.
  grid.addEventListener("click", (event) => {
    const tile = (event.target as Element).closest<HTMLElement>(".cv-tile");
    const channel = Number(tile?.dataset.channel);
    if (tile === null || !Number.isInteger(channel)) return;
    if (!layerShown()) return;
    model.set("selected_channel", channel);
    model.set("overlay_source", "channel");
    model.save_changes();
  });
  select.addEventListener("change", () => {
    model.set("synth_kind", select.value);
    model.set("synth_params", {});
    model.save_changes();
  });
  form.addEventListener("change", (event) => {
    const entry = inputs.find((i) => i.el === event.target);
    if (entry === undefined) return;
    const next = readParamChange(entry, model.get("synth_params"), note);
    if (next === null) return;
    model.set("synth_params", next);
    model.save_changes();
  });

  function drawSynthesis(payload: Payload): void {
    const images = payload ? decodeOptional(payload.images) : null;
    // Several images (restarts, a batch) are drawn side by side.
    const strip = images ? sideBySide(images) : null;
    const adv = (payload?.adversarial ?? null) as Payload;
    // The adversarial view has its own three images and a one-step "curve".
    canvas.hidden = strip === null || adv !== null;
    curveBox.hidden = adv !== null;
    if (strip !== null) drawImage(canvas, strip);
    canvas.dataset.images = String(images?.shape[0] ?? 0);
    setText(caption, adv === null && payload ? String(payload.label ?? "") : "");
    canvas.dataset.step = String(payload?.step ?? 0);
    canvas.dataset.final = String(payload?.final === true);
    const trace = payload ? decodeOptional(payload.trace) : null;
    polyline.setAttribute("points", trace ? curvePoints(trace.data, CURVE_W, CURVE_H) : "");
    curve.setAttribute("data-points", String(trace?.data.length ?? 0));
    setText(curveLabel, payload ? curveText(payload, trace?.data) : "");
    adversarial.hidden = adv === null;
    if (adv !== null) {
      const views = [adv.original, adv.perturbation, payload?.images];
      views.forEach((raw, i) => {
        const batch = decodeOptional(raw);
        const image = batch ? imageAt(batch, 0) : null;
        if (image) drawImage(advCanvases[i] as HTMLCanvasElement, image);
      });
      setText(advBefore, `before: ${predictionText(adv.before)}`);
      setText(advAfter, `after (ε = ${String(adv.epsilon)}/255): ${predictionText(adv.after)}`);
    }
  }

  function drawPins(raw: unknown): void {
    const list = Array.isArray(raw) ? raw : [];
    pins.replaceChildren(
      ...list.map((p: Payload, index) => {
        const batch = p ? decodeOptional(p.images) : null;
        const image = batch ? imageAt(batch, 0) : null;
        const c = h("canvas", { class: "cv-synth-pin" });
        if (image) drawImage(c, image);
        const remove = h("button", { class: "cv-button", type: "button", title: "unpin" }, "×");
        remove.addEventListener("click", () => send("unpin", { index }));
        return h(
          "figure",
          { "data-testid": "synth-pin-item" },
          c,
          h(
            "figcaption",
            {},
            String(p?.label ?? ""),
            p?.detail ? h("span", { class: "cv-muted" }, ` (${String(p.detail)})`) : null,
          ),
          remove,
        );
      }),
    );
  }

  /** The layer's feature visualizations: one tile per channel showing its cell of the
   * sheet, redrawn as batches arrive; ordered as the activation grid when it shows the same
   * layer. */
  function drawGrid(): void {
    const payload = model.get("feature_grid") as Payload;
    const key = [payload, model.get("sort_by"), model.get("grid_means"), model.get("grid_layer")];
    if (key.every((k, i) => k === shownGrid[i])) return;
    const images = payload ? decodeOptional(payload.images) : null;
    const layer = payload ? String(payload.layer ?? "") : "";
    const count = images?.shape.length === 4 ? (images.shape[0] ?? 0) : 0;
    grid.dataset.layer = layer;
    const fresh = count !== gridTiles.length || layer !== gridLayer;
    if (fresh) {
      sheet.arrange(count);
      // Built as the activation grid's tiles (same box and caption), so both grids have the
      // same columns and rows and a tile sits beside its channel's activation tile.
      gridTiles = Array.from({ length: count }, (_, channel) => {
        const image = h("span", { class: "cv-tile-image cv-synth-tile", "data-channel": channel });
        image.style.backgroundPosition = sheet.position(channel);
        return h(
          "div",
          { class: "cv-tile", "data-channel": channel, title: `channel ${channel}` },
          image,
          h("span", { class: "cv-tile-caption" }, String(channel)),
        );
      });
      gridLayer = layer;
      selectedTile = null;
    }
    // Only beside the activations of its own layer: tile for tile, or not at all.
    grid.hidden = count === 0 || !layerShown();
    if (payload !== shownGrid[0]) {
      const [, tileH = 0, tileW = 0] = images?.shape ?? [];
      const ctx = images !== null && count > 0 ? sheet.begin(tileW, tileH) : null;
      if (images !== null && ctx !== null) {
        for (let channel = 0; channel < count; channel++) {
          const image = imageAt(images, channel);
          const { x, y } = sheet.origin(channel);
          if (image) drawImageAt(ctx, image, x, y);
        }
        sheet.publish(fresh);
      } else {
        sheet.clear();
      }
    }
    const means =
      layer === model.get("grid_layer") ? decodeOptional(model.get("grid_means")) : null;
    const order = channelOrder(count, model.get("sort_by"), means);
    grid.replaceChildren(...order.map((channel) => gridTiles[channel] as HTMLElement));
    grid.dataset.count = String(count);
    shownGrid = key;
  }

  /** Outline the selected channel's feature tile, as its activation tile is. */
  function markSelected(): void {
    const channel = model.get("selected_channel");
    const next = layerShown() && Number.isInteger(channel) ? (gridTiles[channel] ?? null) : null;
    if (next === selectedTile) return;
    if (selectedTile !== null) selectedTile.dataset.selected = "false";
    if (next !== null) next.dataset.selected = "true";
    selectedTile = next;
  }

  function layerShown(): boolean {
    return gridLayer !== "" && gridLayer === model.get("grid_layer");
  }

  return {
    el,
    featureGrid: grid,
    featureControls,
    update() {
      const kinds = validKinds(model.get("synth_kinds"));
      const current = String(model.get("synth_kind") || "feature");
      const kind = kinds.find((k) => k.name === current);
      const key = [model.get("synth_kinds"), current];
      if (key.some((k, i) => k !== formKey[i])) {
        formKey = key;
        select.replaceChildren(...kinds.map((k) => h("option", { value: k.name }, k.title)));
        select.value = current;
        select.title = kind?.summary ?? "";
        const controls = paramControls(kind?.params, model.get("synth_params"));
        inputs = controls.map((control, i) => ({
          control,
          el: controlElement(control, `cv-s-${i}`),
        }));
        setText(note, "");
        form.replaceChildren(
          ...inputs.map(({ control, el: input }) =>
            h(
              "div",
              { class: "cv-param" },
              h("label", { title: control.doc || null }, control.name),
              input,
            ),
          ),
        );
      }
      const controls = paramControls(kind?.params, model.get("synth_params"));
      for (const entry of inputs) {
        const control = controls.find((c) => c.name === entry.control.name);
        if (control === undefined) continue;
        entry.control = control;
        showValue(entry.el, control);
      }
      const job = jobView(model.get("synth_job"));
      const rawJob = model.get("synth_job");
      status.dataset.state = job.state;
      status.dataset.job = String(job.id);
      setText(status, job.text);
      live.dataset.stale = String(job.state === "error");
      live.title = job.state === "error" ? "the previous result: the latest run failed" : "";
      stop.disabled = !job.running;
      start.disabled = false;
      resume.disabled = !(job.state === "cancelled" && rawJob?.resumable === true);
      const synthesis = model.get("synthesis");
      if (synthesis !== shownSynthesis) {
        shownSynthesis = synthesis;
        drawSynthesis(synthesis as Payload);
      }
      pin.disabled = !synthesis;
      const pinned = model.get("synth_pins");
      if (pinned !== shownPins) {
        shownPins = pinned;
        drawPins(pinned);
      }
      const gridJob = jobView(model.get("feature_grid_job"));
      gridStatus.dataset.state = gridJob.state;
      setText(gridStatus, gridJob.text);
      layerStop.disabled = !gridJob.running;
      drawGrid();
      markSelected();
    },
  };
}
