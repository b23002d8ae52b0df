/**
 * ndarray payload codec: `{dtype, shape, data}` (C order, little-endian bytes) -> typed array.
 * uint8 stays Uint8Array; float16 and float32 become Float32Array.
 */

export type SourceDType = "uint8" | "float16" | "float32";

export interface Decoded {
  shape: number[];
  data: Uint8Array | Float32Array;
  /** dtype the payload was sent in (float16 arrives here as Float32Array data). */
  dtype: SourceDType;
}

const ITEMSIZE: Record<SourceDType, number> = { uint8: 1, float16: 2, float32: 4 };
const DTYPES: ReadonlySet<string> = new Set(Object.keys(ITEMSIZE));

export class CodecError extends Error {
  override name = "CodecError";
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function isDType(value: unknown): value is SourceDType {
  return typeof value === "string" && DTYPES.has(value);
}

/** The bytes of `data` as a Uint8Array view, honouring byteOffset / byteLength (no copy). */
export function toBytes(data: unknown): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data))
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new CodecError(
    `ndarray data must be a DataView, ArrayBuffer or Uint8Array, got ${describe(data)}`,
  );
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  return (value as object).constructor?.name ?? "object";
}

/** Decode an IEEE 754 half-precision bit pattern (0..65535) exactly. */
export function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24; // zero / subnormal
  if (exponent === 0x1f) return mantissa === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

let halfTable: Float32Array | null = null;

/** All 65536 half values, built once on first use (256 KiB). */
function halfLookup(): Float32Array {
  if (halfTable === null) {
    halfTable = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) halfTable[i] = halfToFloat(i);
  }
  return halfTable;
}

function decodeFloat16(bytes: Uint8Array, count: number): Float32Array {
  const table = halfLookup();
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const lo = bytes[2 * i] as number;
    const hi = bytes[2 * i + 1] as number;
    out[i] = table[lo | (hi << 8)] as number;
  }
  return out;
}

function decodeFloat32(bytes: Uint8Array, count: number): Float32Array {
  if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) {
    return new Float32Array(bytes.buffer, bytes.byteOffset, count);
  }
  // Unaligned (or big-endian host): read element by element.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
  return out;
}

function checkShape(shape: unknown): number[] {
  if (!Array.isArray(shape)) {
    throw new CodecError(`ndarray shape must be a list of ints, got ${describe(shape)}`);
  }
  for (const dim of shape) {
    if (typeof dim !== "number" || !Number.isInteger(dim) || dim < 0) {
      throw new CodecError(`ndarray shape must hold non-negative ints, got [${shape.join(", ")}]`);
    }
  }
  return shape.slice() as number[];
}

/** Number of elements of a shape (1 for a scalar shape []). */
export function product(shape: readonly number[]): number {
  let n = 1;
  for (const dim of shape) n *= dim;
  return n;
}

/**
 * Decode an ndarray payload. Throws CodecError on an unknown dtype, a malformed shape or a
 * byte length that is not product(shape) * itemsize. The result may share memory with the
 * payload (uint8, aligned float32): treat it as read-only.
 */
export function decodeNdArray(payload: unknown): Decoded {
  if (payload === null || typeof payload !== "object") {
    throw new CodecError(
      `ndarray payload must be an object {dtype, shape, data}, got ${describe(payload)}`,
    );
  }
  const { dtype, shape: rawShape, data } = payload as Record<string, unknown>;
  if (!isDType(dtype)) {
    throw new CodecError(
      `unknown ndarray dtype ${JSON.stringify(dtype)} (expected uint8, float16 or float32)`,
    );
  }
  const shape = checkShape(rawShape);
  const bytes = toBytes(data);
  const count = product(shape);
  const expected = count * ITEMSIZE[dtype];
  if (bytes.byteLength !== expected) {
    throw new CodecError(
      `ndarray byte length ${bytes.byteLength} does not match ${dtype} shape [${shape.join(", ")}] ` +
        `(expected ${expected} bytes)`,
    );
  }
  switch (dtype) {
    case "uint8":
      return { shape, data: bytes, dtype };
    case "float16":
      return { shape, data: decodeFloat16(bytes, count), dtype };
    case "float32":
      return { shape, data: decodeFloat32(bytes, count), dtype };
  }
}

/** Like decodeNdArray, but null / undefined (the protocol's empty payload) give null. */
export function decodeOptional(payload: unknown): Decoded | null {
  return payload === null || payload === undefined ? null : decodeNdArray(payload);
}
