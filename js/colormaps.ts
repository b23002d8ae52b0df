/**
 * Colormaps as 256-entry RGB lookup tables sampled from d3-scale-chromatic interpolators
 * (a maintained library, no hand-written tables), and the value -> RGBA mapping.
 */
import {
  interpolateCividis,
  interpolateGreys,
  interpolateInferno,
  interpolateMagma,
  interpolatePlasma,
  interpolateRdBu,
  interpolateTurbo,
  interpolateViridis,
} from "d3-scale-chromatic";

export type Interpolator = (t: number) => string;

/** A colormap: 256 RGB triples, entry i is the colour at t = i / 255. */
export type Lut = Uint8Array;

export const LUT_SIZE = 256;

/** Sequential maps offered in the colormap picker (activations and heatmaps). */
export const colormapNames = [
  "viridis",
  "magma",
  "inferno",
  "plasma",
  "turbo",
  "cividis",
  "gray",
] as const;

/** Diverging maps (signed data, e.g. gradients): negative = blue, positive = red. */
export const divergingColormapNames = ["RdBu"] as const;

export type ColormapName = (typeof colormapNames)[number] | (typeof divergingColormapNames)[number];

export const DEFAULT_COLORMAP: ColormapName = "viridis";

/** Other names accepted for a colormap (docs/protocol.md: jet = turbo alias). */
const ALIASES: ReadonlyMap<string, ColormapName> = new Map([
  ["jet", "turbo"],
  ["grey", "gray"],
  ["greys", "gray"],
  ["rdbu", "RdBu"],
]);

export const interpolators: Record<ColormapName, Interpolator> = {
  viridis: interpolateViridis,
  magma: interpolateMagma,
  inferno: interpolateInferno,
  plasma: interpolatePlasma,
  turbo: interpolateTurbo,
  cividis: interpolateCividis,
  // d3's Greys runs white -> black; reversed so low = black, high = white.
  gray: (t) => interpolateGreys(1 - t),
  // d3's RdBu runs red -> blue; reversed so negative (low) = blue, positive (high) = red.
  RdBu: (t) => interpolateRdBu(1 - t),
};

const RGB_FUNC = /^rgba?\(\s*([^,\s)]+)\s*,\s*([^,\s)]+)\s*,\s*([^,\s)]+)\s*(?:,\s*[^)]*)?\)$/i;
const HEX = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i;

function channel(text: string): number {
  const percent = text.endsWith("%");
  const value = Number.parseFloat(percent ? text.slice(0, -1) : text);
  if (!Number.isFinite(value)) return Number.NaN;
  const scaled = percent ? (value * 255) / 100 : value;
  return Math.max(0, Math.min(255, Math.round(scaled)));
}

/** Parse a CSS colour as produced by d3 ("rgb(r, g, b)", "#rrggbb", "#rgb") into [r, g, b]. */
export function parseColor(css: string): [number, number, number] {
  const text = css.trim();
  const fn = RGB_FUNC.exec(text);
  if (fn) {
    const rgb: [number, number, number] = [
      channel(fn[1] ?? ""),
      channel(fn[2] ?? ""),
      channel(fn[3] ?? ""),
    ];
    if (rgb.every(Number.isFinite)) return rgb;
  }
  const hex = HEX.exec(text)?.[1];
  if (hex !== undefined) {
    const full =
      hex.length === 3
        ? hex
            .split("")
            .map((c) => c + c)
            .join("")
        : hex;
    const n = Number.parseInt(full, 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }
  throw new Error(`cannot parse colour ${JSON.stringify(css)}`);
}

/** Sample an interpolator at t = i / (size - 1) into a packed RGB table. */
export function buildLut(interpolate: Interpolator, size = LUT_SIZE): Lut {
  const lut = new Uint8Array(size * 3);
  for (let i = 0; i < size; i++) {
    const [r, g, b] = parseColor(interpolate(size === 1 ? 0 : i / (size - 1)));
    lut[3 * i] = r;
    lut[3 * i + 1] = g;
    lut[3 * i + 2] = b;
  }
  return lut;
}

/** Canonical colormap name for `name` (aliases resolved), or null when unknown. */
export function resolveColormap(name: string): ColormapName | null {
  const known: readonly string[] = [...colormapNames, ...divergingColormapNames];
  if (known.includes(name)) return name as ColormapName;
  const alias = name.toLowerCase();
  return known.includes(alias) ? (alias as ColormapName) : (ALIASES.get(alias) ?? null);
}

const cache = new Map<ColormapName, Lut>();

/** The LUT for a colormap name (aliases accepted); unknown names fall back to viridis. */
export function getLut(name: string): Lut {
  const key = resolveColormap(name) ?? DEFAULT_COLORMAP;
  let lut = cache.get(key);
  if (lut === undefined) {
    lut = buildLut(interpolators[key]);
    cache.set(key, lut);
  }
  return lut;
}

/**
 * Map values to RGBA through a LUT: lo -> first entry, hi -> last entry, values outside
 * [lo, hi] clamped. A degenerate range (hi <= lo, or not finite) maps everything to the first
 * entry; NaN values become fully transparent.
 */
/** `out` (checked to hold n RGBA pixels) or a new buffer of n pixels. */
function rgbaBuffer(n: number, out?: Uint8ClampedArray): Uint8ClampedArray {
  const rgba = out ?? new Uint8ClampedArray(n * 4);
  if (rgba.length < n * 4) throw new Error(`output holds ${rgba.length / 4} pixels, need ${n}`);
  return rgba;
}

export function applyColormap(
  values: ArrayLike<number>,
  lo: number,
  hi: number,
  lut: Lut,
  out?: Uint8ClampedArray,
): Uint8ClampedArray {
  const n = values.length;
  const rgba = rgbaBuffer(n, out);
  const last = lut.length / 3 - 1;
  const range = hi - lo;
  const scale = Number.isFinite(range) && range > 0 ? last / range : 0;
  const offset = Number.isFinite(lo) ? lo : 0;
  for (let i = 0; i < n; i++) {
    const v = values[i] as number;
    const o = 4 * i;
    if (Number.isNaN(v)) {
      rgba[o] = 0;
      rgba[o + 1] = 0;
      rgba[o + 2] = 0;
      rgba[o + 3] = 0;
      continue;
    }
    let k = Math.round((v - offset) * scale);
    if (!(k > 0))
      k = 0; // also catches -Infinity * 0 = NaN
    else if (k > last) k = last;
    rgba[o] = lut[3 * k] as number;
    rgba[o + 1] = lut[3 * k + 1] as number;
    rgba[o + 2] = lut[3 * k + 2] as number;
    rgba[o + 3] = 255;
  }
  return rgba;
}

/** The diverging map used for signed data (negative = blue, 0 = white, positive = red). */
export const SIGNED_COLORMAP: ColormapName = "RdBu";

/**
 * LUT index of a signed value normalized symmetrically by `maxAbs`: -maxAbs -> 0, 0 -> the
 * middle, +maxAbs -> last; clamped outside. -1 for NaN or a degenerate scale (maxAbs <= 0).
 */
export function divergingIndex(value: number, maxAbs: number, size = LUT_SIZE): number {
  if (Number.isNaN(value) || !(maxAbs > 0) || !Number.isFinite(maxAbs)) return -1;
  const last = size - 1;
  const k = Math.round(((value / maxAbs + 1) / 2) * last);
  return k < 0 ? 0 : k > last ? last : k;
}

/**
 * Map signed values to RGBA through a diverging LUT, normalized symmetrically by `maxAbs`
 * (0 -> LUT middle). Alpha is proportional to |value| / maxAbs, so zero is transparent. A
 * degenerate scale (maxAbs <= 0 or not finite) and NaN values give fully transparent pixels.
 */
export function applyDiverging(
  values: ArrayLike<number>,
  maxAbs: number,
  lut: Lut,
  out?: Uint8ClampedArray,
): Uint8ClampedArray {
  const n = values.length;
  const rgba = rgbaBuffer(n, out);
  const size = lut.length / 3;
  for (let i = 0; i < n; i++) {
    const v = values[i] as number;
    const o = 4 * i;
    const k = divergingIndex(v, maxAbs, size);
    if (k < 0) {
      rgba[o] = 0;
      rgba[o + 1] = 0;
      rgba[o + 2] = 0;
      rgba[o + 3] = 0;
      continue;
    }
    rgba[o] = lut[3 * k] as number;
    rgba[o + 1] = lut[3 * k + 1] as number;
    rgba[o + 2] = lut[3 * k + 2] as number;
    rgba[o + 3] = Math.round(255 * Math.min(1, Math.abs(v) / maxAbs));
  }
  return rgba;
}
