import {
  interpolateGreys,
  interpolateInferno,
  interpolateRdBu,
  interpolateTurbo,
  interpolateViridis,
} from "d3-scale-chromatic";
import { describe, expect, it } from "vitest";
import {
  applyColormap,
  buildLut,
  colormapNames,
  getLut,
  interpolators,
  LUT_SIZE,
  parseColor,
  resolveColormap,
} from "./colormaps";

function entry(lut: Uint8Array, i: number): number[] {
  return Array.from(lut.subarray(3 * i, 3 * i + 3));
}

describe("parseColor", () => {
  it("parses the forms d3 produces", () => {
    expect(parseColor("rgb(68, 1, 84)")).toEqual([68, 1, 84]);
    expect(parseColor("rgb(12,34,56)")).toEqual([12, 34, 56]);
    expect(parseColor(" #fde725 ")).toEqual([253, 231, 37]);
    expect(parseColor("#FFF")).toEqual([255, 255, 255]);
    expect(parseColor("rgba(1, 2, 3, 0.5)")).toEqual([1, 2, 3]);
    expect(parseColor("rgb(100%, 0%, 50%)")).toEqual([255, 0, 128]);
    expect(parseColor("rgb(300, -4, 12.6)")).toEqual([255, 0, 13]);
  });

  it("rejects what it cannot read", () => {
    expect(() => parseColor("hsl(0, 50%, 50%)")).toThrow(/cannot parse colour/);
    expect(() => parseColor("#12345")).toThrow();
    expect(() => parseColor("rgb(a, b, c)")).toThrow();
  });
});

describe("lookup tables", () => {
  it("every named map has 256 RGB entries", () => {
    for (const name of [...colormapNames, "RdBu", "jet"]) {
      expect(getLut(name)).toHaveLength(LUT_SIZE * 3);
    }
  });

  it("endpoints match d3's interpolators at 0 and 1", () => {
    const pairs: [string, (t: number) => string][] = [
      ["viridis", interpolateViridis],
      ["inferno", interpolateInferno],
      ["turbo", interpolateTurbo],
    ];
    for (const [name, interpolate] of pairs) {
      const lut = getLut(name);
      expect(entry(lut, 0)).toEqual(parseColor(interpolate(0)));
      expect(entry(lut, 255)).toEqual(parseColor(interpolate(1)));
    }
    for (const name of colormapNames) {
      const lut = getLut(name);
      const interpolate = interpolators[name];
      expect(entry(lut, 0)).toEqual(parseColor(interpolate(0)));
      expect(entry(lut, 255)).toEqual(parseColor(interpolate(1)));
      expect(entry(lut, 128)).toEqual(parseColor(interpolate(128 / 255)));
    }
    // Known anchors of viridis.
    expect(entry(getLut("viridis"), 0)).toEqual([0x44, 0x01, 0x54]);
    expect(entry(getLut("viridis"), 255)).toEqual([0xfd, 0xe7, 0x25]);
  });

  it("gray runs black to white and is monotone", () => {
    const lut = getLut("gray");
    expect(entry(lut, 0)).toEqual(parseColor(interpolateGreys(1)));
    expect(entry(lut, 0)).toEqual([0, 0, 0]);
    expect(entry(lut, 255)).toEqual([255, 255, 255]);
    for (let i = 1; i < LUT_SIZE; i++) {
      const [r0, g0, b0] = entry(lut, i - 1) as [number, number, number];
      const [r, g, b] = entry(lut, i) as [number, number, number];
      expect(r).toBe(g);
      expect(g).toBe(b);
      expect(r).toBeGreaterThanOrEqual(r0);
      expect(g).toBeGreaterThanOrEqual(g0);
      expect(b).toBeGreaterThanOrEqual(b0);
    }
  });

  it("RdBu is reversed: low = blue, high = red", () => {
    const lut = getLut("RdBu");
    expect(entry(lut, 0)).toEqual(parseColor(interpolateRdBu(1)));
    expect(entry(lut, 255)).toEqual(parseColor(interpolateRdBu(0)));
    const [r0, , b0] = entry(lut, 0) as [number, number, number];
    const [r1, , b1] = entry(lut, 255) as [number, number, number];
    expect(b0).toBeGreaterThan(r0);
    expect(r1).toBeGreaterThan(b1);
  });

  it("resolves aliases and falls back to viridis for unknown names", () => {
    expect(resolveColormap("jet")).toBe("turbo");
    expect(getLut("jet")).toBe(getLut("turbo"));
    expect(resolveColormap("Viridis")).toBe("viridis");
    expect(resolveColormap("constructor")).toBeNull();
    expect(getLut("no-such-map")).toBe(getLut("viridis"));
  });

  it("buildLut samples t = i / (size - 1)", () => {
    const lut = buildLut((t) => `rgb(${t * 255}, 0, ${255 - t * 255})`, 3);
    expect(Array.from(lut)).toEqual([0, 0, 255, 128, 0, 128, 255, 0, 0]);
  });
});

describe("applyColormap", () => {
  const lut = getLut("viridis");
  const first = entry(lut, 0);
  const last = entry(lut, 255);

  function pixel(rgba: Uint8ClampedArray, i: number): number[] {
    return Array.from(rgba.subarray(4 * i, 4 * i + 4));
  }

  it("maps lo to the first entry, hi to the last, and clamps outside", () => {
    const rgba = applyColormap([-5, 0, 10, 20, 1e9, Number.NEGATIVE_INFINITY], 0, 10, lut);
    expect(rgba).toHaveLength(24);
    expect(pixel(rgba, 0)).toEqual([...first, 255]); // below lo
    expect(pixel(rgba, 1)).toEqual([...first, 255]); // lo
    expect(pixel(rgba, 2)).toEqual([...last, 255]); // hi
    expect(pixel(rgba, 3)).toEqual([...last, 255]); // above hi
    expect(pixel(rgba, 4)).toEqual([...last, 255]);
    expect(pixel(rgba, 5)).toEqual([...first, 255]);
  });

  it("maps the middle of the range to the middle entry", () => {
    const rgba = applyColormap(new Float32Array([0.5]), 0, 1, lut);
    expect(pixel(rgba, 0)).toEqual([...entry(lut, 128), 255]);
    const codes = applyColormap(Uint8Array.from([0, 17, 255]), 0, 255, lut);
    expect(pixel(codes, 1)).toEqual([...entry(lut, 17), 255]);
  });

  it("maps a constant map without NaN", () => {
    const rgba = applyColormap(new Float32Array(16).fill(3), 3, 3, lut);
    for (let i = 0; i < 16; i++) expect(pixel(rgba, i)).toEqual([...first, 255]);
    const nanRange = applyColormap([1, 2], Number.NaN, Number.NaN, lut);
    expect(pixel(nanRange, 1)).toEqual([...first, 255]);
  });

  it("makes NaN values transparent and writes into a given buffer", () => {
    const out = new Uint8ClampedArray(8).fill(9);
    const rgba = applyColormap([Number.NaN, 1], 0, 1, lut, out);
    expect(rgba).toBe(out);
    expect(pixel(rgba, 0)).toEqual([0, 0, 0, 0]);
    expect(pixel(rgba, 1)).toEqual([...last, 255]);
    expect(() => applyColormap([1, 2, 3], 0, 1, lut, new Uint8ClampedArray(8))).toThrow();
  });
});
