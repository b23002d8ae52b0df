/**
 * A tile sheet: every tile of a grid drawn into one hidden canvas, each tile element showing
 * its cell of it as a CSS background (`--cv-sheet`, `--cv-sheet-size` on the grid element).
 *
 * A canvas per tile made every frame of the page re-layerize up to thousands of canvases
 * (40-100 ms per frame without a GPU), which delayed every update of the widget.
 */
import { h } from "../dom";

/** Where tile `index` sits in a sheet of `cols` columns. */
export function sheetCell(index: number, cols: number): { col: number; row: number } {
  return { col: index % cols, row: Math.floor(index / cols) };
}

/** Columns of a near-square sheet of `count` tiles. */
export function sheetColumns(count: number): number {
  return Math.max(1, Math.ceil(Math.sqrt(count)));
}

/** CSS background position (percent) of cell `index` out of `cells` along one axis. */
export function backgroundPercent(index: number, cells: number): number {
  return cells <= 1 ? 0 : (100 * index) / (cells - 1);
}

export interface TileSheet {
  /** The hidden sheet (`data-testid="tile-sheet"`, `data-sheet-for` = the grid's test id,
   * with `data-cols`, `data-tile-w/h` in px). */
  readonly canvas: HTMLCanvasElement;
  /** Lay out `count` tiles (near-square) and size the background to match. */
  arrange(count: number): void;
  /** The CSS `background-position` of tile `index` in the current arrangement. */
  position(index: number): string;
  /** Clear and size the sheet for tiles of `tileW` x `tileH` px; null when empty. */
  begin(tileW: number, tileH: number): CanvasRenderingContext2D | null;
  /** Top-left pixel of tile `index` on the sheet. */
  origin(index: number): { x: number; y: number };
  /**
   * Show the drawn sheet behind the tiles once encoded (the grid's `data-sheet` goes
   * `pending` then `ready`). `fresh` hides the previous sheet meanwhile, so no tile shows
   * another grid's pixels; otherwise the previous one stays until the new one is ready.
   */
  publish(fresh: boolean): void;
  /** Show no sheet (nothing to draw), and drop any encoding still under way. */
  clear(): void;
}

export function createTileSheet(grid: HTMLElement): TileSheet {
  const canvas = h("canvas", {
    "data-testid": "tile-sheet",
    "data-sheet-for": grid.dataset.testid ?? null,
    hidden: true,
  });
  let cols = 1;
  let rows = 1;
  let tileW = 0;
  let tileH = 0;
  let version = 0;
  return {
    canvas,
    arrange(count) {
      cols = sheetColumns(count);
      rows = Math.max(1, Math.ceil(count / cols));
      grid.style.setProperty("--cv-sheet-size", `${cols * 100}% ${rows * 100}%`);
    },
    position(index) {
      const { col, row } = sheetCell(index, cols);
      return `${backgroundPercent(col, cols)}% ${backgroundPercent(row, rows)}%`;
    },
    begin(w, h) {
      tileW = w;
      tileH = h;
      canvas.width = Math.max(1, cols * w);
      canvas.height = Math.max(1, rows * h);
      canvas.dataset.cols = String(cols);
      canvas.dataset.tileW = String(w);
      canvas.dataset.tileH = String(h);
      if (w === 0 || h === 0) return null;
      return canvas.getContext("2d");
    },
    origin(index) {
      const { col, row } = sheetCell(index, cols);
      return { x: col * tileW, y: row * tileH };
    },
    publish(fresh) {
      const current = ++version;
      grid.dataset.sheet = "pending";
      if (fresh) grid.style.removeProperty("--cv-sheet");
      // A data: URL rather than blob: works under VS Code's stricter webview policy.
      canvas.toBlob((blob) => {
        if (blob === null || current !== version) return;
        const reader = new FileReader();
        reader.onload = () => {
          if (current !== version || typeof reader.result !== "string") return;
          grid.style.setProperty("--cv-sheet", `url("${reader.result}")`);
          grid.dataset.sheet = "ready";
        };
        reader.readAsDataURL(blob);
      });
    },
    clear() {
      version++;
      grid.style.removeProperty("--cv-sheet");
      delete grid.dataset.sheet;
    },
  };
}
