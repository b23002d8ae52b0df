import { describe, expect, it } from "vitest";
import { matchesConcept, tileCaption } from "./views/filterGrid";
import { atlasStatus, histogramBars, segmentPixels, stackItem } from "./views/unitCard";

describe("stackItem", () => {
  it("views item i of a (k, ...) stack without copying", () => {
    const data = Uint8Array.from({ length: 2 * 2 * 2 * 3 }, (_, i) => i);
    const item = stackItem({ shape: [2, 2, 2, 3], dtype: "uint8", data }, 1);
    expect(item?.shape).toEqual([2, 2, 3]);
    expect(Array.from(item?.data ?? [])).toEqual(Array.from({ length: 12 }, (_, i) => 12 + i));
    expect(item?.data.buffer).toBe(data.buffer);
  });
  it("is null out of range", () => {
    const stack = { shape: [1, 1, 1, 3], dtype: "uint8" as const, data: new Uint8Array(3) };
    expect(stackItem(stack, 1)).toBeNull();
    expect(stackItem(stack, -1)).toBeNull();
  });
});

describe("histogramBars", () => {
  it("scales bars to the tallest and places the value in the range", () => {
    const { heights, marker } = histogramBars([0, 1, 2, 4], [2, 4, 1], 3);
    expect(heights).toEqual([0.5, 1, 0.25]);
    expect(marker).toBeCloseTo(0.75);
  });
  it("clamps a value outside the range", () => {
    expect(histogramBars([0, 1], [1], -5).marker).toBe(0);
    expect(histogramBars([0, 1], [1], 9).marker).toBe(1);
  });
});

describe("atlasStatus", () => {
  it("names the covered layers and marks a stopped one", () => {
    const text = atlasStatus(
      [
        { name: "a", images: 3000, complete: true },
        { name: "b", images: 1200, complete: false },
      ],
      3000,
    );
    expect(text).toContain("a, b (1,200 so far)");
    expect(text).toContain("3,000 images");
  });
  it("says when there is no atlas yet", () => {
    expect(atlasStatus([], 10)).toBe("No atlas yet (data set: 10 images).");
  });
});

describe("segmentPixels", () => {
  it("keeps the unit's region and dims the rest", () => {
    const images = {
      shape: [1, 1, 2, 3],
      dtype: "uint8" as const,
      data: Uint8Array.from([100, 200, 50, 100, 200, 50]),
    };
    const masks = { shape: [1, 1, 2], dtype: "uint8" as const, data: Uint8Array.from([1, 0]) };
    const out = Array.from(segmentPixels(images, masks, 0, 0.5));
    expect(out).toEqual([100, 200, 50, 255, 50, 100, 25, 255]);
  });
});

describe("dissection labels on tiles", () => {
  const red = { concept: "red", category: "color", iou: 0.12, detector: true };
  const weak = { concept: "dog", category: "object", iou: 0.01, detector: false };
  it("captions detectors with their concept only", () => {
    expect(tileCaption(3, red)).toBe("3 red");
    expect(tileCaption(4, weak)).toBe("4");
    expect(tileCaption(5, undefined)).toBe("5");
  });
  it("filters by concept text or category name, detectors only", () => {
    expect(matchesConcept(red, "re")).toBe(true);
    const checkered = { concept: "checkered", category: "texture", iou: 0.2, detector: true };
    expect(matchesConcept(checkered, "red")).toBe(false);
    const wall = { concept: "stone wall", category: "texture", iou: 0.2, detector: true };
    expect(matchesConcept(wall, "wall")).toBe(true);
    expect(matchesConcept(red, "Color")).toBe(true);
    expect(matchesConcept(weak, "dog")).toBe(false);
    expect(matchesConcept(weak, "")).toBe(true);
    expect(matchesConcept(undefined, "red")).toBe(false);
  });
});
