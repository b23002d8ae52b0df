/**
 * The unit card's empirical receptive field (Zhou et al. 2015, sec. 3.2; `unit_field`, computed
 * in the background on `field_job`). A button asks the kernel for the card's unit
 * (`{type: "field", layer, unit}`); its progress and Stop follow; then the averaged discrepancy
 * map over the top image at its peak (colormap and opacity applied here, as for the card's other
 * maps: changing them sends nothing) with the theoretical field dashed and the empirical one
 * solid, the empirical size against the theoretical, and each top image with the field placed
 * at its peak (dimmed outside, outlined). A field is drawn only on the card of its own unit.
 */
import { composite, heatByMax, mapFrom } from "../canvas";
import { type Decoded, decodeNdArray } from "../codecs";
import { getLut } from "../colormaps";
import { h, replace, setText } from "../dom";
import { jobView } from "../jobs";
import { FIELD_TOP_K, type UnitCard, type UnitField } from "../protocol";
import type { ExplorerModel } from "../types";
import { createJobProgress } from "./jobProgress";

/** Side (CSS px, about) the map is drawn at: an integer zoom of its pixels. */
const MAP_SIDE = 160;
const OUTLINE: readonly [number, number, number] = [255, 204, 0];

/** "empirical 13 x 12 px of 83 x 83 theoretical". */
export function fieldSizeText(field: UnitField): string {
  const [h = 0, w = 0] = field.size;
  const [th = 0, tw = 0] = field.theoretical;
  return `empirical ${h} x ${w} px of ${th} x ${tw} theoretical`;
}

/** How the field was measured: images (a stopped run says so), occluder, threshold. */
export function fieldNote(field: UnitField): string {
  const stopped = field.complete ? "" : ", stopped early";
  return (
    `averaged over ${field.images} of ${field.requested} top images${stopped} · ` +
    `occluder ${field.patch} px, stride ${field.stride} · field: above ${field.fraction} of the map's maximum`
  );
}

/** Whether `field` belongs to the card of `card` (the payload names its layer and unit). */
export function fieldOf(field: UnitField | null, card: UnitCard | null): field is UnitField {
  return field !== null && card !== null && field.layer === card.layer && field.unit === card.unit;
}

/** Images the field is measured over for a card: its first examples, at most FIELD_TOP_K. */
export function fieldImages(card: UnitCard): number {
  return Math.min(card.examples.length, FIELD_TOP_K);
}

/** RGBA pixels of image i of a (n, H, W, 3) stack with the field's mask i of a (n, H, W)
 * stack: outside the mask dimmed to `dim`, its border (inside pixels with a 4-neighbour
 * outside, or on the image's edge) in the outline colour. */
export function fieldSegmentPixels(
  images: Decoded,
  masks: Decoded,
  i: number,
  dim: number,
): Uint8ClampedArray {
  const [, height = 0, width = 0] = images.shape;
  const size = height * width;
  const inside = (y: number, x: number): boolean =>
    y >= 0 && y < height && x >= 0 && x < width && (masks.data[i * size + y * width + x] ?? 0) > 0;
  const out = new Uint8ClampedArray(size * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = y * width + x;
      const here = inside(y, x);
      const edge =
        here && !(inside(y - 1, x) && inside(y + 1, x) && inside(y, x - 1) && inside(y, x + 1));
      for (let c = 0; c < 3; c++) {
        const value = (images.data[(i * size + p) * 3 + c] ?? 0) * (here ? 1 : dim);
        out[4 * p + c] = edge ? (OUTLINE[c] ?? 0) : value;
      }
      out[4 * p + 3] = 255;
    }
  }
  return out;
}

interface Arrays {
  map: Decoded;
  backdrop: Decoded;
  images: Decoded;
  masks: Decoded;
}

function drawMap(
  canvas: HTMLCanvasElement,
  field: UnitField,
  arrays: Arrays,
  model: ExplorerModel,
) {
  const map = mapFrom(arrays.map);
  const heat = map ? heatByMax(map) : null;
  const [rows = 0, cols = 0] = arrays.map.shape;
  const small = document.createElement("canvas");
  composite(
    small,
    arrays.backdrop,
    heat,
    model.get("opacity"),
    getLut(model.get("colormap") ?? "viridis"),
  );
  const zoom = Math.max(1, Math.floor(MAP_SIDE / Math.max(1, rows, cols)));
  canvas.width = Math.max(1, cols * zoom);
  canvas.height = Math.max(1, rows * zoom);
  const ctx = canvas.getContext("2d");
  canvas.dataset.drawn = String(ctx !== null && heat !== null);
  if (ctx === null) return;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
  const [cy = 0, cx = 0] = field.centre;
  const [th = 0, tw = 0] = field.theoretical;
  ctx.lineWidth = 1;
  ctx.strokeStyle = "#ffffff";
  ctx.setLineDash?.([4, 3]);
  const left = cx - Math.floor(tw / 2);
  const top = cy - Math.floor(th / 2);
  ctx.strokeRect(left * zoom + 0.5, top * zoom + 0.5, tw * zoom - 1, th * zoom - 1);
  const [bt = 0, bl = 0, bb = 0, br = 0] = field.box;
  if (bb > bt && br > bl) {
    ctx.setLineDash?.([]);
    ctx.strokeStyle = `rgb(${OUTLINE.join(",")})`;
    ctx.lineWidth = 2;
    ctx.strokeRect(
      (cx + bl) * zoom + 1,
      (cy + bt) * zoom + 1,
      (br - bl) * zoom - 2,
      (bb - bt) * zoom - 2,
    );
  }
}

function drawSegments(box: HTMLElement, field: UnitField, arrays: Arrays): void {
  const [n = 0, height = 0, width = 0] = arrays.images.shape;
  const tiles = [];
  for (let i = 0; i < n; i++) {
    const canvas = h("canvas", {
      class: "cv-units-crop",
      "data-testid": "unit-field-segment",
      "data-index": field.indices[i] ?? -1,
    });
    canvas.width = Math.max(1, width);
    canvas.height = Math.max(1, height);
    const ctx = canvas.getContext("2d");
    if (ctx !== null && width > 0 && height > 0) {
      const pixels = ctx.createImageData(width, height);
      pixels.data.set(fieldSegmentPixels(arrays.images, arrays.masks, i, field.dim));
      ctx.putImageData(pixels, 0, 0);
    }
    tiles.push(canvas);
  }
  replace(box, ...tiles);
}

export interface FieldSection {
  readonly el: HTMLElement;
  /** Redraw for the card shown now (null: none). */
  update(card: UnitCard | null): void;
}

export function createFieldSection(model: ExplorerModel): FieldSection {
  let shownCard: UnitCard | null = null;
  const button = h(
    "button",
    { class: "cv-button", type: "button", "data-testid": "unit-field-compute" },
    "Empirical field",
  );
  button.addEventListener("click", () => {
    if (shownCard !== null) {
      model.send({ type: "field", layer: shownCard.layer, unit: shownCard.unit });
    }
  });
  const progress = createJobProgress(model, "field_job", "field");
  const map = h("canvas", {
    class: "cv-units-field-map",
    "data-testid": "unit-field-map",
    role: "img",
  });
  const size = h("div", { class: "cv-units-title", "data-testid": "unit-field-size" });
  const note = h("div", { class: "cv-units-note", "data-testid": "unit-field-note" });
  const segments = h("div", { class: "cv-units-crops", "data-testid": "unit-field-segments" });
  const result = h(
    "div",
    { class: "cv-units-field-result", hidden: true },
    h(
      "div",
      { class: "cv-units-row" },
      map,
      h(
        "div",
        {},
        size,
        note,
        h(
          "div",
          { class: "cv-units-note" },
          "Averaged discrepancy map (occlusion) over the top image at the unit's peak; dashed: the theoretical field, solid: the empirical one. Below: the top images, outside the field dimmed.",
        ),
      ),
    ),
    segments,
  );
  const el = h(
    "div",
    { class: "cv-units-field", "data-testid": "unit-field" },
    h("div", { class: "cv-units-bar" }, button, progress.el),
    result,
  );

  let decodedFor: UnitField | null = null;
  let arrays: Arrays | null = null;

  return {
    el,
    update(card) {
      shownCard = card;
      progress.update();
      const job = jobView(model.get("field_job"));
      const raw = model.get("unit_field");
      const field = fieldOf(raw, card) ? raw : null;
      el.hidden = card === null;
      if (card === null) return;
      const count = fieldImages(card);
      button.hidden = field?.complete === true;
      button.disabled = job.running;
      setText(
        button,
        field === null
          ? `Empirical field (top ${count} images)`
          : `Empirical field again (all ${field.requested} images)`,
      );
      result.hidden = field === null;
      if (field === null) return;
      if (decodedFor !== field) {
        arrays = {
          map: decodeNdArray(field.map),
          backdrop: decodeNdArray(field.backdrop),
          images: decodeNdArray(field.images_seen),
          masks: decodeNdArray(field.masks),
        };
        decodedFor = field;
        if (arrays) drawSegments(segments, field, arrays);
      }
      if (arrays === null) return;
      setText(size, fieldSizeText(field));
      setText(note, fieldNote(field));
      drawMap(map, field, arrays, model);
    },
  };
}
