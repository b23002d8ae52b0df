/**
 * Filter grid: one tile per channel of the selected layer's activation, colormapped with the
 * current colormap, ordered by channel index or by mean activation. A click selects (or
 * deselects) a channel, which is shown enlarged above the grid.
 *
 * All channels are drawn into one tile sheet (see ./tileSheet). A companion grid (the layer's
 * feature visualizations) sits beside it in the same columns, scrolled with it.
 */
import { drawMap, drawMapAt, finiteRange, type Heat, heatFromUint8, mapFrom } from "../canvas";
import type { Decoded } from "../codecs";
import { getLut } from "../colormaps";
import { formatNumber, h, setText } from "../dom";
import type { UnitTag } from "../protocol";
import type { ArrayStore } from "../store";
import type { ExplorerModel, View } from "../types";
import { createTileSheet } from "./tileSheet";

interface Tile {
  channel: number;
  el: HTMLElement;
  image: HTMLElement;
  caption: HTMLElement;
}

/** A tile's caption: its channel, and its dissection concept when it is a detector. */
export function tileCaption(channel: number, tag: UnitTag | undefined): string {
  return tag?.detector ? `${channel} ${tag.concept}` : String(channel);
}

/** Whether a tile passes the concept filter (`text`: the start of a word of the concept, so
 * "red" does not find "checkered", or a category name; empty: every tile). Only detectors
 * match a non-empty filter. */
export function matchesConcept(tag: UnitTag | undefined, text: string): boolean {
  const needle = text.trim().toLowerCase();
  if (needle === "") return true;
  if (tag === undefined || !tag.detector) return false;
  const words = tag.concept.toLowerCase().split(/\s+/);
  return words.some((word) => word.startsWith(needle)) || tag.category.toLowerCase() === needle;
}

/** Heat for channel c of a (C, h, w) grid: uint8 spans the colormap, floats use min..max. */
export function channelHeat(grid: Decoded, channel: number): Heat | null {
  const map = mapFrom(grid, channel);
  if (map === null) return null;
  if (grid.dtype === "uint8") return heatFromUint8(map);
  const { min, max } = finiteRange(map.data);
  return { map, lo: min, hi: max };
}

/** Channel order: by index, or by mean descending (NaN last, ties by index). */
export function channelOrder(count: number, sortBy: string, means: Decoded | null): number[] {
  const order = Array.from({ length: count }, (_, i) => i);
  if (sortBy !== "mean" || means === null || means.data.length !== count) return order;
  const m = means.data;
  const key = (i: number) => {
    const v = m[i] as number;
    return Number.isNaN(v) ? Number.NEGATIVE_INFINITY : v;
  };
  return order.sort((a, b) => key(b) - key(a) || a - b);
}

/** A grid shown beside the activation grid, tile for tile: its controls go above both. */
export interface CompanionGrid {
  controls: HTMLElement;
  grid: HTMLElement;
}

/** Keep `b` scrolled as `a` while both hold the same number of tiles (same rows). */
function scrollTogether(a: HTMLElement, b: HTMLElement): void {
  const follow = (from: HTMLElement, to: HTMLElement) =>
    from.addEventListener(
      "scroll",
      () => {
        if (from.dataset.count !== to.dataset.count) return;
        if (to.scrollTop !== from.scrollTop) to.scrollTop = from.scrollTop;
      },
      { passive: true },
    );
  follow(a, b);
  follow(b, a);
}

export function createFilterGrid(
  model: ExplorerModel,
  arrays: ArrayStore,
  companion?: CompanionGrid,
): View {
  const title = h("span", { class: "cv-grid-layer" });
  const countLabel = h("span", { class: "cv-grid-count" });
  const note = h("div", { class: "cv-empty", hidden: true });
  const channelSlot = h("div", { class: "cv-channel", hidden: true });
  const grid = h("div", { class: "cv-grid", "data-testid": "grid", "data-count": "0" });
  const conceptFilter = h("input", {
    class: "cv-input cv-unit-filter",
    type: "search",
    placeholder: "find units by concept (red, dog, striped)",
    "data-testid": "unit-filter",
    hidden: true,
  });
  const filterNote = h("span", { class: "cv-grid-count", "data-testid": "unit-filter-count" });
  const sheet = createTileSheet(grid);
  const el = h(
    "div",
    { class: "cv-filters" },
    h("div", { class: "cv-section-title" }, "Filters ", title, " ", countLabel),
    channelSlot,
    note,
    h("div", { class: "cv-unit-filter-row" }, conceptFilter, filterNote),
    companion?.controls ?? null,
    h("div", { class: "cv-grid-pair" }, grid, companion?.grid ?? null),
    sheet.canvas,
  );
  if (companion !== undefined) scrollTogether(grid, companion.grid);

  let tiles: Tile[] = [];
  let drawnGrid: Decoded | null | undefined;
  let drawnLut: Uint8Array | null = null;
  let order: { tiles: Tile[] | null; sortBy: string; means: Decoded | null } = {
    tiles: null,
    sortBy: "",
    means: null,
  };
  let selectedTile: Tile | null = null;
  let labelled: { tiles: Tile[] | null; tags: UnitTag[] | null; text: string } = {
    tiles: null,
    tags: null,
    text: "",
  };
  conceptFilter.addEventListener("input", () => applyLabels(true));

  /** Tile captions and titles from the dissection labels, and the concept filter. */
  function applyLabels(force = false): void {
    const tags = model.get("unit_labels") ?? [];
    const text = conceptFilter.value;
    if (!force && labelled.tiles === tiles && labelled.tags === tags && labelled.text === text)
      return;
    conceptFilter.hidden = tags.length === 0;
    let shown = 0;
    for (const tile of tiles) {
      const tag = tags[tile.channel];
      setText(tile.caption, tileCaption(tile.channel, tag));
      tile.el.title = tag
        ? `channel ${tile.channel}: ${tag.concept} (${tag.category}), IoU ${tag.iou.toFixed(3)}${tag.detector ? "" : " (below the detector threshold)"}`
        : `channel ${tile.channel}`;
      tile.el.dataset.concept = tag?.detector ? tag.concept : "";
      const visible = tags.length === 0 || matchesConcept(tag, text);
      tile.el.hidden = !visible;
      if (visible) shown += 1;
    }
    setText(filterNote, tags.length && text.trim() ? `${shown} of ${tiles.length} units` : "");
    labelled = { tiles, tags, text };
  }
  let enlarged: { canvas: HTMLCanvasElement; caption: HTMLElement } | null = null;
  let enlargedDrawn: { grid: Decoded; channel: number; lut: Uint8Array } | null = null;

  grid.addEventListener("click", (event) => {
    const tileEl = (event.target as Element).closest<HTMLElement>(".cv-tile");
    if (tileEl === null || !grid.contains(tileEl)) return;
    const channel = Number(tileEl.dataset.channel);
    if (!Number.isInteger(channel)) return;
    // A second click on the channel shown over the image deselects it (back to the map).
    const shown =
      model.get("selected_channel") === channel && model.get("overlay_source") === "channel";
    model.set("selected_channel", shown ? -1 : channel);
    model.set("overlay_source", shown ? "map" : "channel");
    model.save_changes();
  });

  /** One tile per channel, each placed on its cell of the sheet (the layout depends on the
   * count only; the tile box is set on the grid by drawTiles). */
  function buildTiles(count: number): void {
    tiles = [];
    sheet.arrange(count);
    for (let c = 0; c < count; c++) {
      const image = h("span", { class: "cv-tile-image", "data-testid": "tile", "data-channel": c });
      image.style.backgroundPosition = sheet.position(c);
      const caption = h("span", { class: "cv-tile-caption" }, String(c));
      const tile = h(
        "div",
        { class: "cv-tile", "data-channel": c, "data-selected": "false", title: `channel ${c}` },
        image,
        caption,
      );
      tiles.push({ channel: c, el: tile, image, caption });
    }
    selectedTile = null;
  }

  /** Draw every channel into the sheet and publish it (`fresh`: a new grid, see
   * TileSheet.publish; false: a new colormap). */
  function drawTiles(g: Decoded, lut: Uint8Array, fresh: boolean): void {
    const [, mapH = 0, mapW = 0] = g.shape;
    const ctx = sheet.begin(mapW, mapH);
    if (ctx === null) {
      sheet.clear();
      return;
    }
    // The tile box keeps the map's aspect ratio within a --cv-tile square.
    grid.style.setProperty("--cv-tile-w", `calc(var(--cv-tile) * ${Math.min(1, mapW / mapH)})`);
    grid.style.setProperty("--cv-tile-h", `calc(var(--cv-tile) * ${Math.min(1, mapH / mapW)})`);
    for (const tile of tiles) {
      const heat = channelHeat(g, tile.channel);
      const { x, y } = sheet.origin(tile.channel);
      if (heat !== null) drawMapAt(ctx, heat, lut, x, y);
    }
    sheet.publish(fresh);
  }

  function updateEnlarged(g: Decoded | null, channel: number, lut: Uint8Array): void {
    const count = g?.shape[0] ?? 0;
    const heat = g !== null && channel >= 0 && channel < count ? channelHeat(g, channel) : null;
    if (g === null || heat === null) {
      if (enlarged !== null) {
        channelSlot.replaceChildren();
        channelSlot.hidden = true;
        enlarged = null;
        enlargedDrawn = null;
      }
      return;
    }
    if (enlarged === null) {
      const canvas = h("canvas", { class: "cv-channel-canvas", "data-testid": "channel-view" });
      const caption = h("div", { class: "cv-channel-caption" });
      channelSlot.replaceChildren(canvas, caption);
      channelSlot.hidden = false;
      enlarged = { canvas, caption };
    }
    enlarged.canvas.dataset.channel = String(channel);
    const layer = model.get("grid_layer") ?? "";
    const d = enlargedDrawn;
    if (d === null || d.grid !== g || d.channel !== channel || d.lut !== lut) {
      drawMap(enlarged.canvas, heat, lut);
      enlargedDrawn = { grid: g, channel, lut };
    }
    const lo = arrays.get("grid_lo")?.data[channel];
    const hi = arrays.get("grid_hi")?.data[channel];
    const mean = arrays.get("grid_means")?.data[channel];
    setText(
      enlarged.caption,
      `${layer} · channel ${channel} · ${heat.map.h}×${heat.map.w} · ` +
        `range ${formatNumber(lo)} … ${formatNumber(hi)} · mean ${formatNumber(mean)}`,
    );
  }

  return {
    el,
    update() {
      const g = arrays.get("grid");
      const layer = model.get("grid_layer") ?? "";
      const lut = getLut(model.get("colormap") ?? "viridis");
      const valid = g !== null && g.shape.length === 3;
      const count = valid ? (g.shape[0] ?? 0) : 0;

      if (g !== drawnGrid) {
        if (tiles.length !== count) buildTiles(count);
        if (valid) drawTiles(g, lut, true);
        else sheet.clear();
      } else if (lut !== drawnLut && valid) {
        drawTiles(g, lut, false);
      }

      const sortBy = model.get("sort_by") ?? "index";
      const means = arrays.get("grid_means");
      if (order.tiles !== tiles || order.sortBy !== sortBy || order.means !== means) {
        const nodes: HTMLElement[] = [];
        for (const c of channelOrder(count, sortBy, means)) {
          const tile = tiles[c];
          if (tile !== undefined) nodes.push(tile.el);
        }
        grid.replaceChildren(...nodes);
        order = { tiles, sortBy, means };
      }

      const selected = model.get("selected_channel");
      const nextSelected = Number.isInteger(selected) ? (tiles[selected] ?? null) : null;
      if (nextSelected !== selectedTile) {
        if (selectedTile !== null) selectedTile.el.dataset.selected = "false";
        if (nextSelected !== null) nextSelected.el.dataset.selected = "true";
        selectedTile = nextSelected;
      }
      updateEnlarged(valid ? g : null, selected, lut);
      applyLabels();

      drawnGrid = g;
      drawnLut = lut;

      setText(title, layer === "" ? "" : `· ${layer}`);
      setText(countLabel, valid ? `(${count} channels, ${g.shape[1]}×${g.shape[2]})` : "");
      const message = valid
        ? ""
        : (arrays.errors.get("grid") ??
          (layer === "" ? "Select a layer." : "No spatial activation map for this layer."));
      note.hidden = message === "";
      setText(note, message);
      // Set last: browser tests wait on these once the tiles are drawn.
      grid.dataset.layer = layer;
      grid.dataset.count = String(count);
    },
  };
}
