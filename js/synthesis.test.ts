import { describe, expect, it } from "vitest";
import { curvePoints, imageAt, predictionText, sideBySide, validKinds } from "./synthesis";

describe("curvePoints", () => {
  it("puts the largest value at the top and spans the width", () => {
    expect(curvePoints([0, 1, 2], 100, 10)).toBe("0.0,10.0 50.0,5.0 100.0,0.0");
  });
  it("skips non-finite values and needs two points", () => {
    expect(curvePoints([1], 10, 10)).toBe("");
    expect(curvePoints([Number.NaN, 3, 3], 10, 10)).toBe("5.0,10.0 10.0,10.0");
  });
});

describe("imageAt", () => {
  it("slices one image of a (K, H, W, 3) batch", () => {
    const data = new Uint8Array(2 * 1 * 2 * 3).map((_, i) => i);
    const image = imageAt({ shape: [2, 1, 2, 3], dtype: "uint8", data }, 1);
    expect(image?.shape).toEqual([1, 2, 3]);
    expect(Array.from(image?.data ?? [])).toEqual([6, 7, 8, 9, 10, 11]);
    expect(imageAt({ shape: [2, 1, 2, 3], dtype: "uint8", data }, 2)).toBeNull();
  });
});

describe("sideBySide", () => {
  it("lays K images in one row with white gaps", () => {
    // Two 2x1 images: image 0 rows [1], [2]; image 1 rows [3], [4] (grey levels).
    const data = Uint8Array.from([1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]);
    const strip = sideBySide({ shape: [2, 2, 1, 3], dtype: "uint8", data }, 1);
    expect(strip?.shape).toEqual([2, 3, 3]);
    const grey = Array.from(strip?.data ?? []).filter((_, i) => i % 3 === 0);
    expect(grey).toEqual([1, 255, 3, 2, 255, 4]);
  });
  it("returns one image as it is and refuses malformed batches", () => {
    const data = new Uint8Array(6).fill(7);
    expect(sideBySide({ shape: [1, 1, 2, 3], dtype: "uint8", data })?.shape).toEqual([1, 2, 3]);
    expect(sideBySide({ shape: [2, 3], dtype: "uint8", data })).toBeNull();
  });
});

describe("validKinds and predictionText", () => {
  it("keeps well-formed kinds only", () => {
    const kinds = validKinds([
      { name: "feature", title: "Channel", params: [] },
      { name: 3 },
      null,
    ]);
    expect(kinds.map((k) => k.name)).toEqual(["feature"]);
  });
  it("formats a prediction as text", () => {
    expect(predictionText({ label: "tabby <b>", prob: 0.634 })).toBe("tabby <b> 63%");
    expect(predictionText(null)).toBe("");
  });
});
