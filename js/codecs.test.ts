import { describe, expect, it } from "vitest";
import { CodecError, decodeNdArray, decodeOptional, halfToFloat, product } from "./codecs";

/** Little-endian bytes of uint16 bit patterns. */
function halfBytes(bits: number[]): Uint8Array {
  const bytes = new Uint8Array(bits.length * 2);
  bits.forEach((b, i) => {
    bytes[2 * i] = b & 0xff;
    bytes[2 * i + 1] = b >> 8;
  });
  return bytes;
}

/** Copy `bytes` into a larger buffer at `offset`, surrounded by junk, and view it. */
function embedded(bytes: Uint8Array, offset: number): DataView {
  const buffer = new ArrayBuffer(offset + bytes.length + 5);
  const all = new Uint8Array(buffer);
  all.fill(0xee);
  all.set(bytes, offset);
  return new DataView(buffer, offset, bytes.length);
}

describe("float16", () => {
  const cases: [number, number][] = [
    [0x0000, 0],
    [0x3c00, 1],
    [0xc000, -2],
    [0x3555, 0.333251953125],
    [0x7bff, 65504],
    [0x0001, 2 ** -24], // smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x0400, 2 ** -14], // smallest normal
    [0x7c00, Number.POSITIVE_INFINITY],
    [0xfc00, Number.NEGATIVE_INFINITY],
  ];

  it.each(cases)("bit pattern %s decodes exactly", (bits, value) => {
    expect(halfToFloat(bits)).toBe(value);
  });

  it("decodes negative zero and NaN", () => {
    expect(Object.is(halfToFloat(0x8000), -0)).toBe(true);
    expect(halfToFloat(0x7e00)).toBeNaN();
    expect(halfToFloat(0x7c01)).toBeNaN();
    expect(halfToFloat(0xfe00)).toBeNaN();
  });

  it("decodes a payload into a Float32Array with the exact values", () => {
    const bits = cases.map(([b]) => b).concat([0x7e00]);
    const out = decodeNdArray({ dtype: "float16", shape: [bits.length], data: halfBytes(bits) });
    expect(out.data).toBeInstanceOf(Float32Array);
    expect(out.dtype).toBe("float16");
    expect(Array.from(out.data.slice(0, cases.length))).toEqual(cases.map(([, v]) => v));
    expect(out.data[cases.length]).toBeNaN();
  });

  it("honours a DataView's byteOffset (odd offset, unaligned)", () => {
    const view = embedded(halfBytes([0x3c00, 0xc000, 0x7bff, 0x0001]), 3);
    const out = decodeNdArray({ dtype: "float16", shape: [2, 2], data: view });
    expect(out.shape).toEqual([2, 2]);
    expect(Array.from(out.data)).toEqual([1, -2, 65504, 2 ** -24]);
  });

  it("every half value round-trips through Float32 exactly", () => {
    const inexact: number[] = [];
    let nans = 0;
    for (let bits = 0; bits < 65536; bits += 1) {
      const v = halfToFloat(bits);
      if (Number.isNaN(v)) nans += 1;
      else if (Math.fround(v) !== v) inexact.push(bits);
    }
    expect(inexact).toEqual([]);
    expect(nans).toBe(2 * 1023); // exponent 31, non-zero mantissa, both signs
  });
});

describe("uint8 and float32", () => {
  it("uint8 round trip through a DataView at a non-zero byteOffset", () => {
    const values = Uint8Array.from({ length: 2 * 3 * 3 }, (_, i) => (i * 37) % 256);
    const out = decodeNdArray({ dtype: "uint8", shape: [2, 3, 3], data: embedded(values, 7) });
    expect(out.data).toBeInstanceOf(Uint8Array);
    expect(out.shape).toEqual([2, 3, 3]);
    expect(Array.from(out.data)).toEqual(Array.from(values));
  });

  it("float32 round trip through a DataView at aligned and unaligned offsets", () => {
    const values = new Float32Array([0, 1.5, -3.25, 1e-30, 3.4e38, Number.POSITIVE_INFINITY]);
    const bytes = new Uint8Array(values.buffer);
    for (const offset of [8, 5, 2]) {
      const out = decodeNdArray({ dtype: "float32", shape: [2, 3], data: embedded(bytes, offset) });
      expect(out.data).toBeInstanceOf(Float32Array);
      expect(Array.from(out.data)).toEqual(Array.from(values));
    }
  });

  it("accepts ArrayBuffer and Uint8Array (with offset) data", () => {
    const values = new Float32Array([1, 2, 3, 4]);
    const fromBuffer = decodeNdArray({ dtype: "float32", shape: [4], data: values.buffer });
    expect(Array.from(fromBuffer.data)).toEqual([1, 2, 3, 4]);
    const big = new Uint8Array(24);
    big.set(new Uint8Array(values.buffer), 4);
    const sub = big.subarray(4, 20);
    const fromSub = decodeNdArray({ dtype: "float32", shape: [2, 2], data: sub });
    expect(Array.from(fromSub.data)).toEqual([1, 2, 3, 4]);
  });

  it("decodes empty arrays and scalars", () => {
    expect(
      decodeNdArray({ dtype: "uint8", shape: [0, 4], data: new Uint8Array(0) }).data,
    ).toHaveLength(0);
    const scalar = decodeNdArray({
      dtype: "float32",
      shape: [],
      data: new Float32Array([7]).buffer,
    });
    expect(Array.from(scalar.data)).toEqual([7]);
    expect(product([])).toBe(1);
  });
});

describe("validation", () => {
  it("rejects a byte length that does not match the shape", () => {
    const call = () => decodeNdArray({ dtype: "float32", shape: [2, 3], data: new Uint8Array(20) });
    expect(call).toThrow(CodecError);
    expect(call).toThrow(/byte length 20 .*\[2, 3\].*expected 24 bytes/);
    expect(() =>
      decodeNdArray({
        dtype: "uint8",
        shape: [4, 4, 3],
        data: embedded(new Uint8Array(48), 3).buffer,
      }),
    ).toThrow(/byte length 56/);
  });

  it("rejects unknown dtypes, bad shapes and bad data", () => {
    expect(() => decodeNdArray({ dtype: "int64", shape: [1], data: new Uint8Array(8) })).toThrow(
      /unknown ndarray dtype "int64"/,
    );
    expect(() => decodeNdArray({ dtype: "toString", shape: [1], data: new Uint8Array(1) })).toThrow(
      CodecError,
    );
    expect(() => decodeNdArray({ dtype: "uint8", shape: [2.5], data: new Uint8Array(2) })).toThrow(
      /non-negative ints/,
    );
    expect(() => decodeNdArray({ dtype: "uint8", shape: [-1], data: new Uint8Array(0) })).toThrow(
      /non-negative ints/,
    );
    expect(() => decodeNdArray({ dtype: "uint8", shape: "2", data: new Uint8Array(2) })).toThrow(
      /shape must be a list/,
    );
    expect(() => decodeNdArray({ dtype: "uint8", shape: [2], data: [1, 2] })).toThrow(
      /DataView, ArrayBuffer or Uint8Array, got Array/,
    );
    expect(() => decodeNdArray(null)).toThrow(CodecError);
  });

  it("decodeOptional maps the empty payload to null", () => {
    expect(decodeOptional(null)).toBeNull();
    expect(decodeOptional(undefined)).toBeNull();
  });
});
