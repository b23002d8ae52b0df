/**
 * The synthesis panel's pure logic (no DOM): the objective curve as SVG polyline points, the
 * kinds list from the `synth_kinds` trait, one frame's image slice, and prediction text.
 */
import type { Decoded } from "./codecs";
import { formatPercent } from "./dom";
import type { SynthesisKindRow } from "./protocol";

/** A row of the `synth_kinds` trait (the protocol's type, under the name the panel uses). */
export type SynthKind = SynthesisKindRow;

/** Well-formed entries of the `synth_kinds` trait (it comes over the wire). */
export function validKinds(raw: unknown): SynthKind[] {
  if (!Array.isArray(raw)) return [];
  return raw.filter(
    (k): k is SynthKind =>
      k !== null &&
      typeof k === "object" &&
      typeof (k as SynthKind).name === "string" &&
      typeof (k as SynthKind).title === "string" &&
      Array.isArray((k as SynthKind).params),
  );
}

/**
 * SVG polyline points of `values` scaled into a `width` x `height` box (y grows downward, so
 * the largest value is at the top). Non-finite values are skipped; "" for fewer than 2 points.
 */
export function curvePoints(values: ArrayLike<number>, width: number, height: number): string {
  const finite: [number, number][] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (Number.isFinite(v)) finite.push([i, v]);
  }
  if (finite.length < 2) return "";
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const [, v] of finite) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const span = hi - lo || 1;
  const last = Math.max(1, values.length - 1);
  return finite
    .map(([i, v]) => {
      const x = (i / last) * width;
      const y = height - ((v - lo) / span) * height;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(" ");
}

/** Image `index` of a (K, H, W, 3) uint8 batch as an (H, W, 3) array sharing its data. */
export function imageAt(batch: Decoded, index: number): Decoded | null {
  const [k = 0, hgt = 0, w = 0, c = 0] = batch.shape;
  if (batch.shape.length !== 4 || c !== 3 || index < 0 || index >= k) return null;
  const size = hgt * w * 3;
  return {
    shape: [hgt, w, 3],
    dtype: batch.dtype,
    data: batch.data.subarray(index * size, (index + 1) * size),
  } as Decoded;
}

/**
 * The images of a (K, H, W, 3) uint8 batch side by side in one (H, K W + (K - 1) gap, 3)
 * image, separated by `gap` white columns; null when the batch is not such a batch.
 */
export function sideBySide(batch: Decoded, gap = 2): Decoded | null {
  const [k = 0, hgt = 0, w = 0, c = 0] = batch.shape;
  if (batch.shape.length !== 4 || c !== 3 || k === 0 || batch.dtype !== "uint8") return null;
  if (k === 1) return imageAt(batch, 0);
  const width = k * w + (k - 1) * gap;
  const out = new Uint8Array(hgt * width * 3).fill(255);
  for (let i = 0; i < k; i++) {
    for (let row = 0; row < hgt; row++) {
      const from = (i * hgt + row) * w * 3;
      out.set(batch.data.subarray(from, from + w * 3), (row * width + i * (w + gap)) * 3);
    }
  }
  return { shape: [hgt, width, 3], dtype: "uint8", data: out };
}

/** "tiger cat 63.4%" from a {label, prob} prediction; "" when malformed. */
export function predictionText(raw: unknown): string {
  const p = raw as { label?: unknown; prob?: unknown } | null;
  if (p === null || typeof p !== "object" || typeof p.label !== "string") return "";
  return typeof p.prob === "number" ? `${p.label} ${formatPercent(p.prob)}` : p.label;
}
