import { describe, expect, it } from "vitest";
import { backgroundPercent, sheetCell, sheetColumns } from "./views/tileSheet";

describe("tile sheet layout", () => {
  it("is near-square and holds every channel", () => {
    for (const count of [1, 2, 16, 24, 80, 1280]) {
      const cols = sheetColumns(count);
      const rows = Math.ceil(count / cols);
      expect(cols * rows).toBeGreaterThanOrEqual(count);
      expect(Math.abs(cols - rows)).toBeLessThanOrEqual(1);
      const last = sheetCell(count - 1, cols);
      expect(last.row).toBe(rows - 1);
    }
  });

  it("positions each cell's background exactly on that cell", () => {
    // CSS: a p% background position puts the image's p% point on the box's p% point, so the
    // image (cols x tile wide) is shifted left by p% of (cols - 1) tiles.
    const cols = 7;
    for (let col = 0; col < cols; col++) {
      const shiftInTiles = (backgroundPercent(col, cols) / 100) * (cols - 1);
      expect(shiftInTiles).toBeCloseTo(col, 10);
    }
    expect(backgroundPercent(0, 1)).toBe(0);
    expect(sheetCell(12, 5)).toEqual({ col: 2, row: 2 });
  });
});
