/**
 * The unit card: what the selected channel responds to over a data set (`unit_card`, one
 * message from the kernel). Its top examples are drawn as receptive-field crops with the unit's
 * activation over them (colormap and opacity applied here, so changing them sends nothing), then
 * the histogram of its per-image maxima with the current image marked, its top classes as bars,
 * a button for its feature visualization (the synthesis panel draws it), and its empirical
 * receptive field (`fieldView.ts`). Above the card: which
 * layers the atlas covers, a button that computes the selected layer's, and that job's progress.
 */
import { composite, drawImage, heatFromUint8, mapFrom } from "../canvas";
import { type Decoded, decodeNdArray } from "../codecs";
import { getLut } from "../colormaps";
import { formatNumber, h, replace, setText } from "../dom";
import type { AtlasLayer, UnitCard, UnitDissection } from "../protocol";
import type { ExplorerModel, View } from "../types";
import { createFieldSection } from "./fieldView";
import { createJobProgress } from "./jobProgress";

const HISTOGRAM_WIDTH = 240;
const COMPUTE = "Compute atlas for this layer";

/** One line on what the atlas covers: its layers (with images seen when stopped early). */
export function atlasStatus(layers: readonly AtlasLayer[], images: number): string {
  const total = images.toLocaleString("en");
  if (!layers.length) return `No atlas yet (data set: ${total} images).`;
  const names = layers.map((row) =>
    row.complete ? row.name : `${row.name} (${row.images.toLocaleString("en")} so far)`,
  );
  return `Atlas of ${names.join(", ")} over ${total} images. Click a filter tile to open its unit.`;
}
const HISTOGRAM_HEIGHT = 64;

/** Image i of a decoded (k, S, S, 3) stack as its own (S, S, 3) array (no copy). */
export function stackItem(stack: Decoded, i: number): Decoded | null {
  const [k = 0, ...rest] = stack.shape;
  if (i < 0 || i >= k) return null;
  const size = rest.reduce((a, b) => a * b, 1);
  return { shape: rest, dtype: stack.dtype, data: stack.data.subarray(i * size, (i + 1) * size) };
}

/** Bar heights (0..1 of the tallest) of a histogram, and where `value` falls (0..1 of the
 * range, clamped). */
export function histogramBars(
  edges: readonly number[],
  counts: readonly number[],
  value: number,
): { heights: number[]; marker: number } {
  const top = Math.max(1, ...counts);
  const lo = edges[0] ?? 0;
  const hi = edges[edges.length - 1] ?? 1;
  const span = hi - lo || 1;
  const marker = Math.min(1, Math.max(0, (value - lo) / span));
  return { heights: counts.map((c) => c / top), marker };
}

function drawHistogram(canvas: HTMLCanvasElement, card: UnitCard, color: string): void {
  canvas.width = HISTOGRAM_WIDTH;
  canvas.height = HISTOGRAM_HEIGHT;
  const ctx = canvas.getContext("2d");
  if (ctx === null) return;
  const { edges, counts } = card.histogram;
  const { heights, marker } = histogramBars(edges, counts, card.current);
  const width = HISTOGRAM_WIDTH / Math.max(1, heights.length);
  ctx.fillStyle = color;
  heights.forEach((height, i) => {
    const barHeight = Math.max(height > 0 ? 1 : 0, height * (HISTOGRAM_HEIGHT - 4));
    ctx.fillRect(i * width, HISTOGRAM_HEIGHT - barHeight, Math.max(1, width - 1), barHeight);
  });
  ctx.fillStyle = "#d62728";
  ctx.fillRect(Math.round(marker * (HISTOGRAM_WIDTH - 2)), 0, 2, HISTOGRAM_HEIGHT);
}

/** RGBA pixels of image i of a (k, S, S, 3) stack with its unit's segmentation (mask i of a
 * (k, S, S) stack, 1 = inside): outside the mask the image is dimmed to `dim` of its
 * brightness, as NetDissect's visualizations show a unit's region. */
export function segmentPixels(
  images: Decoded,
  masks: Decoded,
  i: number,
  dim = 0.3,
): Uint8ClampedArray {
  const [, height = 0, width = 0] = images.shape;
  const size = height * width;
  const out = new Uint8ClampedArray(size * 4);
  for (let p = 0; p < size; p++) {
    const inside = (masks.data[i * size + p] ?? 0) > 0;
    const scale = inside ? 1 : dim;
    for (let c = 0; c < 3; c++) out[4 * p + c] = (images.data[(i * size + p) * 3 + c] ?? 0) * scale;
    out[4 * p + 3] = 255;
  }
  return out;
}

function drawSegments(box: HTMLElement, part: UnitDissection): void {
  const images = decodeNdArray(part.images);
  const masks = decodeNdArray(part.masks);
  const [k = 0, height = 0, width = 0] = images.shape;
  const tiles = [];
  for (let i = 0; i < k; i++) {
    const canvas = h("canvas", {
      class: "cv-units-crop",
      "data-testid": "unit-segment",
      "data-index": part.indices[i] ?? -1,
    });
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    if (ctx !== null && width > 0 && height > 0) {
      const pixels = ctx.createImageData(width, height);
      pixels.data.set(segmentPixels(images, masks, i));
      ctx.putImageData(pixels, 0, 0);
    }
    tiles.push(canvas);
  }
  replace(box, ...tiles);
}

export function createUnitCard(model: ExplorerModel): View {
  const status = h("span", { class: "cv-units-status", "data-testid": "atlas-status" });
  const compute = h(
    "button",
    { class: "cv-button", type: "button", "data-testid": "atlas-compute" },
    COMPUTE,
  );
  compute.addEventListener("click", () => {
    model.send({ type: "atlas", layer: model.get("selected_layer") });
  });
  const progress = createJobProgress(model, "atlas_job", "atlas");
  const title = h("div", { class: "cv-units-title", "data-testid": "unit-card-title" });
  const crops = h("div", { class: "cv-units-crops", "data-testid": "unit-crops" });
  const histogram = h("canvas", { class: "cv-units-histogram", "data-testid": "unit-histogram" });
  const histogramText = h("div", { class: "cv-units-note", "data-testid": "unit-current" });
  const classes = h("div", { class: "cv-units-classes", "data-testid": "unit-classes" });
  const stats = h("div", { class: "cv-units-note", "data-testid": "unit-stats" });
  const dissectionLabel = h("div", { class: "cv-units-title", "data-testid": "unit-concept" });
  const segments = h("div", { class: "cv-units-crops", "data-testid": "unit-segments" });
  const dissectionBox = h(
    "div",
    { class: "cv-units-dissection", hidden: true },
    dissectionLabel,
    h(
      "div",
      { class: "cv-units-note" },
      "Top images of the concept data, outside the unit's region dimmed:",
    ),
    segments,
  );
  const visualize = h(
    "button",
    { class: "cv-button", type: "button", "data-testid": "unit-visualize" },
    "Feature visualization",
  );
  const feature = h("canvas", { class: "cv-units-feature", "data-testid": "unit-feature" });
  const featureNote = h("div", { class: "cv-units-note" });
  visualize.addEventListener("click", () => {
    model.set("synth_kind", "feature");
    model.save_changes();
    model.send({ type: "synth", action: "start" });
  });
  const field = createFieldSection(model);
  const card = h(
    "div",
    { class: "cv-units-card", "data-testid": "unit-card", hidden: true },
    title,
    crops,
    h(
      "div",
      { class: "cv-units-row" },
      h("div", {}, histogram, histogramText),
      h("div", {}, classes, visualize),
      h("div", {}, feature, featureNote),
    ),
    stats,
    field.el,
    dissectionBox,
  );
  const el = h(
    "details",
    { class: "cv-units", "data-testid": "units-panel", open: true },
    h("summary", {}, "Unit atlas"),
    h("div", { class: "cv-units-bar" }, status, compute),
    progress.el,
    card,
  );

  let decodedFor: UnitCard | null = null;
  let decodedSegmentsFor: UnitDissection | null = null;
  let decoded: { crops: Decoded; maps: Decoded } | null = null;

  function drawCrops(shown: UnitCard): void {
    if (decodedFor !== shown) {
      decoded = { crops: decodeNdArray(shown.crops), maps: decodeNdArray(shown.crop_maps) };
      decodedFor = shown;
    }
    if (decoded === null) return;
    const lut = getLut(model.get("colormap") ?? "viridis");
    const opacity = model.get("opacity");
    const tiles = shown.examples.map((example, i) => {
      const canvas = h("canvas", {
        class: "cv-units-crop",
        "data-testid": "unit-crop",
        "data-index": example.index,
        "data-value": example.value,
      });
      const image = decoded ? stackItem(decoded.crops, i) : null;
      const map = decoded ? mapFrom(decoded.maps, i) : null;
      composite(canvas, image, map ? heatFromUint8(map) : null, opacity, lut);
      const caption = `#${example.index}${example.label ? ` ${example.label}` : ""} · ${formatNumber(example.value)}`;
      return h("figure", { class: "cv-units-example" }, canvas, h("figcaption", {}, caption));
    });
    replace(crops, ...tiles);
  }

  /** The unit's feature visualization: the synthesis panel's run for this very channel (live
   * frames included), else its tile of the layer's feature grid. */
  function drawFeature(shown: UnitCard): void {
    const run = model.get("synthesis");
    const grid = model.get("feature_grid");
    let image: Decoded | null = null;
    let note = "";
    if (run?.unit && run.unit.layer === shown.layer && run.unit.channel === shown.unit) {
      image = stackItem(decodeNdArray(run.images), 0);
      note = run.final
        ? "feature visualization"
        : `feature visualization, step ${run.step}/${run.total}`;
    } else if (grid && grid.layer === shown.layer) {
      image = stackItem(decodeNdArray(grid.images), shown.unit);
      note = "feature visualization (layer grid)";
    }
    feature.hidden = image === null;
    if (image !== null) drawImage(feature, image);
    setText(featureNote, note);
  }

  return {
    el,
    update() {
      progress.update();
      const images = model.get("atlas_images") ?? 0;
      el.hidden = images === 0;
      const layers = model.get("atlas_layers") ?? [];
      const layer = model.get("selected_layer");
      const here = layers.find((row) => row.name === layer);
      setText(status, atlasStatus(layers, images));
      compute.hidden = here?.complete === true;
      setText(
        compute,
        here ? `Resume atlas for this layer (${here.images} of ${images} images)` : COMPUTE,
      );
      const shown = model.get("unit_card");
      const visible = shown !== null && shown.layer === layer;
      card.hidden = !visible;
      field.update(visible ? shown : null);
      if (!visible || shown === null) return;
      const partial = shown.complete ? "" : " (stopped early)";
      setText(
        title,
        `${shown.layer} · unit ${shown.unit}: top ${shown.examples.length} of ${shown.images} images${partial}`,
      );
      drawCrops(shown);
      drawHistogram(histogram, shown, "#4c78a8");
      drawFeature(shown);
      const part = shown.dissection;
      dissectionBox.hidden = part === null;
      if (part !== null && decodedSegmentsFor !== part) {
        const verdict = part.detector ? "detector" : "below the detector threshold";
        setText(
          dissectionLabel,
          `Dissection: ${part.concept || "no concept"} (${part.category}), IoU ${part.iou.toFixed(3)}, ${verdict}`,
        );
        drawSegments(segments, part);
        decodedSegmentsFor = part;
      }
      const below = Number.isFinite(shown.current_below)
        ? ` (above ${Math.round(100 * shown.current_below)}% of the data set)`
        : "";
      setText(
        histogramText,
        `Max per image over the data set; this image: ${formatNumber(shown.current)}${below}`,
      );
      const top = Math.max(...shown.classes.map((c) => Math.abs(c.mean)), 1e-12);
      replace(
        classes,
        ...shown.classes.map((c) =>
          h(
            "div",
            { class: "cv-units-class" },
            h("span", { class: "cv-units-class-name" }, c.name),
            h("span", {
              class: "cv-units-class-bar",
              style: `width: ${Math.round((100 * Math.max(0, c.mean)) / top)}px`,
            }),
            h("span", { class: "cv-units-class-value" }, formatNumber(c.mean)),
          ),
        ),
      );
      setText(
        stats,
        `mean ${formatNumber(shown.mean)} · max ${formatNumber(shown.max)} · top-${100 * shown.q}% threshold ${formatNumber(shown.quantile)} · receptive field ${shown.field_size.join("×")} px (${shown.field_method})`,
      );
    },
  };
}
