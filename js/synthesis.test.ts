import { describe, expect, it } from "vitest";
import { curvePoints, imageAt, predictionText, validKinds } from "./synthesis";

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
