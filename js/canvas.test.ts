import { describe, expect, it } from "vitest";
import { heatPixel, heatSigned, maxAbs, PIXEL_CLIP, quantileAbs } from "./canvas";
import {
  applyColormap,
  applyDiverging,
  divergingIndex,
  getLut,
  LUT_SIZE,
  SIGNED_COLORMAP,
} from "./colormaps";

describe("signed (diverging) normalization", () => {
  it("maps -m to 0, 0 to the middle, +m to the last entry", () => {
    expect(divergingIndex(-2, 2)).toBe(0);
    expect(divergingIndex(0, 2)).toBe(Math.round((LUT_SIZE - 1) / 2));
    expect(divergingIndex(2, 2)).toBe(255);
    expect(divergingIndex(1, 2)).toBe(Math.round(0.75 * 255));
    expect(divergingIndex(-5, 2)).toBe(0);
    expect(divergingIndex(5, 2)).toBe(255);
  });

  it("gives no index for NaN or a degenerate scale", () => {
    expect(divergingIndex(Number.NaN, 1)).toBe(-1);
    expect(divergingIndex(0, 0)).toBe(-1);
    expect(divergingIndex(1, Number.NaN)).toBe(-1);
    expect(divergingIndex(1, Number.POSITIVE_INFINITY)).toBe(-1);
  });

  it("colours by sign with alpha proportional to |value| / max (zero transparent)", () => {
    const lut = getLut(SIGNED_COLORMAP);
    const rgba = applyDiverging([-4, 0, 2, 4, Number.NaN], 4, lut);
    const px = (i: number) => Array.from(rgba.subarray(4 * i, 4 * i + 4));
    expect(px(0)).toEqual([...lut.subarray(0, 3), 255]);
    expect(px(1)[3]).toBe(0);
    expect(px(2)[3]).toBe(128);
    expect(px(3)).toEqual([...lut.subarray(3 * 255, 3 * 256), 255]);
    expect(px(4)).toEqual([0, 0, 0, 0]);
    // negative end is blue, positive end red
    const [r0 = 0, , b0 = 0] = px(0);
    const [r1 = 0, , b1 = 0] = px(3);
    expect(b0).toBeGreaterThan(r0);
    expect(r1).toBeGreaterThan(b1);
  });

  it("an all-zero map draws nothing and yields no NaN", () => {
    const zeros = new Float32Array(16);
    expect(maxAbs(zeros)).toBe(0);
    expect(heatSigned({ h: 4, w: 4, data: zeros })).toBeNull();
    const rgba = applyDiverging(zeros, 0, getLut(SIGNED_COLORMAP));
    expect(Array.from(rgba).every((v) => v === 0)).toBe(true);
  });

  it("normalizes symmetrically by max |value|, skipping non-finite values", () => {
    const data = new Float32Array([-3, 1, Number.NaN, Number.POSITIVE_INFINITY, 0.5]);
    expect(maxAbs(data)).toBe(3);
    expect(heatSigned({ h: 1, w: 5, data }, 1)).toMatchObject({ lo: -3, hi: 3, signed: true });
    expect(maxAbs([])).toBe(0);
  });

  it("clips the scale at the 99th percentile of |value| by default", () => {
    const data = new Float32Array(200).map((_, i) => (i % 2 === 0 ? 1 : -1));
    data[7] = 500; // one extreme pixel must not wash out the other 199
    expect(quantileAbs(data, 0.99)).toBe(1);
    expect(heatSigned({ h: 10, w: 20, data })).toMatchObject({ lo: -1, hi: 1 });
    const sparse = new Float32Array(1000);
    sparse[3] = -2; // 99th percentile is 0: fall back to the max
    expect(heatSigned({ h: 10, w: 100, data: sparse })).toMatchObject({ lo: -2, hi: 2 });
  });
});

/** `n` seeded Laplace(0, 1) samples, random signs: the heavy tail of a gradient map. */
function laplace(n: number, seed = 7): Float32Array {
  let state = seed;
  const uniform = () => {
    state = (state * 1664525 + 1013904223) % 4294967296;
    return (state + 0.5) / 4294967296;
  };
  return new Float32Array(n).map(() => {
    const u = uniform() - 0.5;
    return -Math.sign(u) * Math.log(1 - 2 * Math.abs(u));
  });
}

describe("pixel-space maps (gradients, Integrated Gradients, ...)", () => {
  const lut = getLut("viridis");

  it("draw |value| on the user colormap, every pixel, clipped at the 99th percentile", () => {
    const data = new Float32Array(200).map((_, i) => (i % 2 === 0 ? 2 : -1));
    data[7] = -500; // an outlier saturates; it does not set the scale
    const heat = heatPixel({ h: 10, w: 20, data }, "absolute");
    expect(heat).toMatchObject({ lo: 0, hi: quantileAbs(data, PIXEL_CLIP) });
    expect(heat?.hi).toBe(2);
    expect(heat?.signed).toBeUndefined();
    expect(Array.from(heat?.map.data ?? [])).toEqual(Array.from(data, Math.abs));
    const rgba = applyColormap(heat?.map.data ?? [], 0, heat?.hi ?? 0, lut);
    expect(rgba.filter((_, i) => i % 4 === 3).every((a) => a === 255)).toBe(true);
    // -500 and +2 both reach the top of the colormap.
    expect(Array.from(rgba.subarray(28, 31))).toEqual(Array.from(lut.subarray(765, 768)));
  });

  it("draw signed values on the diverging map at the same clip level", () => {
    const data = new Float32Array(200).map((_, i) => (i % 2 === 0 ? 2 : -1));
    expect(heatPixel({ h: 10, w: 20, data }, "signed")).toMatchObject({
      lo: -2,
      hi: 2,
      signed: true,
    });
    expect(heatPixel({ h: 2, w: 2, data: new Float32Array(4) }, "absolute")).toBeNull();
  });

  it("give most of a heavy-tailed map a visible colour, which the max would not", () => {
    const data = laplace(224 * 224);
    const heat = heatPixel({ h: 224, w: 224, data }, "absolute");
    if (heat === null) throw new Error("no heat");
    const share = (hi: number) => {
      const rgba = applyColormap(heat.map.data, 0, hi, lut);
      let lit = 0;
      for (let i = 0; i < rgba.length; i += 4) {
        // at least a quarter of the way up the colormap
        if ((rgba[i + 1] as number) >= (lut[3 * 64 + 1] as number)) lit += 1;
      }
      return lit / (rgba.length / 4);
    };
    expect(share(heat.hi)).toBeGreaterThan(0.25);
    expect(share(maxAbs(data))).toBeLessThan(0.1);
  });
});
