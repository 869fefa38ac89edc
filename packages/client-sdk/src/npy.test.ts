import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { NpyFormatError } from "./errors.js";
import { encodeNpy, npyHeader, parseNpy, parseNpyInPlace } from "./npy.js";

/** Builds an .npy file by hand: any version, header text and payload. */
function npyBytes(version: 1 | 2 | 3, header: string, payload: Uint8Array, pad = true): Uint8Array {
  const lengthBytes = version === 1 ? 2 : 4;
  const prefix = 8 + lengthBytes;
  let text = header;
  if (pad) {
    const total = prefix + text.length + 1;
    text += " ".repeat((64 - (total % 64)) % 64);
    text += "\n";
  }
  const headerBytes = new TextEncoder().encode(text);
  const out = new Uint8Array(prefix + headerBytes.length + payload.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(8, headerBytes.length, true);
  else view.setUint32(8, headerBytes.length, true);
  out.set(headerBytes, prefix);
  out.set(payload, prefix + headerBytes.length);
  return out;
}

const f8 = (values: number[]): Uint8Array => new Uint8Array(new Float64Array(values).buffer);
const header = (descr: string, shape: string, fortran = "False"): string =>
  `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}, }`;

/** The data section of a matrix, given row by row, stored as `descr` in C or Fortran order. */
function layout(values: number[][], cols: number, descr: string, fortran: boolean): Uint8Array {
  const rows = values.length;
  const itemBytes = descr.endsWith("8") ? 8 : 4;
  const littleEndian = descr.startsWith("<");
  const out = new Uint8Array(rows * cols * itemBytes);
  const view = new DataView(out.buffer);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const offset = (fortran ? j * rows + i : i * cols + j) * itemBytes;
      const v = values[i]?.[j] as number;
      if (itemBytes === 8) view.setFloat64(offset, v, littleEndian);
      else view.setFloat32(offset, v, littleEndian);
    }
  }
  return out;
}

/** Runs a full garbage collection (V8's `gc`, made available at run time). */
function collectGarbage(): void {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
}

function expectNpyError(bytes: Uint8Array, pattern: RegExp): void {
  let caught: unknown;
  try {
    parseNpy(bytes);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(NpyFormatError);
  const err = caught as NpyFormatError;
  expect(err.name).toBe("NpyFormatError");
  expect(err.message).toMatch(pattern);
  expect(err.message).not.toContain("\n");
}

describe("parseNpy", () => {
  it.each([1, 2, 3] as const)("reads a version %i.0 <f8 file", (version) => {
    const bytes = npyBytes(version, header("<f8", "(2, 3)"), f8([1, 2, 3, 4, 5, 6.5]));
    const m = parseNpy(bytes);
    expect(m.rows).toBe(2);
    expect(m.cols).toBe(3);
    expect(Array.from(m.data)).toEqual([1, 2, 3, 4, 5, 6.5]);
    expect(m.data).toBeInstanceOf(Float64Array);
  });

  it("upcasts <f4 to float64", () => {
    const payload = new Uint8Array(new Float32Array([0.5, -2, 3.25, 1e10]).buffer);
    const m = parseNpy(npyBytes(1, header("<f4", "(2, 2)"), payload));
    expect(Array.from(m.data)).toEqual([0.5, -2, 3.25, Math.fround(1e10)]);
    expect(m.data).toBeInstanceOf(Float64Array);
  });

  it("copies out of a pooled Node Buffer instead of aliasing the pool", () => {
    const file = Buffer.from(npyBytes(1, header("<f8", "(1, 2)"), f8([3, 4])));
    const pooled = Buffer.concat([Buffer.alloc(5, 1), file]).subarray(5);
    expect(pooled.byteOffset).not.toBe(0);
    const m = parseNpy(pooled);
    expect(Array.from(m.data)).toEqual([3, 4]);
    expect(m.data.buffer.byteLength).toBe(16);
  });

  it("copies data that sits at an offset not aligned to 8 bytes", () => {
    // Unpadded header: data offset 10 + len(header) is odd-aligned.
    const text = header("<f8", "(1, 2)");
    const inner = npyBytes(1, text, f8([Math.PI, -0]), false);
    expect((10 + text.length) % 8).not.toBe(0);
    // And place the file itself at an odd offset inside a larger buffer.
    const outer = new Uint8Array(inner.length + 3);
    outer.set(inner, 3);
    const m = parseNpy(outer.subarray(3));
    expect(m.data[0]).toBe(Math.PI);
    expect(Object.is(m.data[1], -0)).toBe(true);
    expect(m.data.buffer).not.toBe(outer.buffer);
  });

  it("accepts double quotes, no trailing comma, other key order, and ignores trailing bytes", () => {
    const text = `{"shape": (1,2), "fortran_order": False, "descr": "<f8"}`;
    const payload = new Uint8Array([...f8([7, 8]), 0xff, 0xff]);
    const m = parseNpy(npyBytes(2, text, payload));
    expect(Array.from(m.data)).toEqual([7, 8]);
  });

  it("parses zero-sized dimensions", () => {
    const m = parseNpy(npyBytes(1, header("<f8", "(0, 5)"), new Uint8Array()));
    expect([m.rows, m.cols, m.data.length]).toEqual([0, 5, 0]);
  });

  it("reads big-endian bytes: >f8 and >f4", () => {
    const be8 = [0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xc0, 0x00, 0, 0, 0, 0, 0, 0]; // 1.0, -2.0
    expect(Array.from(parseNpy(npyBytes(1, header(">f8", "(1, 2)"), new Uint8Array(be8))).data)).toEqual([1, -2]);
    const be4 = [0x3f, 0x80, 0, 0, 0xc0, 0x40, 0, 0]; // 1.0, -3.0
    expect(Array.from(parseNpy(npyBytes(1, header(">f4", "(2, 1)"), new Uint8Array(be4))).data)).toEqual([1, -3]);
  });

  it("reads fortran_order: True column by column", () => {
    const m = parseNpy(npyBytes(1, header("<f8", "(2, 3)", "True"), f8([1, 4, 2, 5, 3, 6])));
    expect([m.rows, m.cols]).toEqual([2, 3]);
    expect(Array.from(m.data)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  const LAYOUTS = ["<f8", ">f8", "<f4", ">f4"].flatMap((descr) => [
    [descr, false],
    [descr, true],
  ]) as [string, boolean][];

  it.each(LAYOUTS)("reads %s (fortran %s) to row-major float64, special values included", (descr, fortran) => {
    const values = [
      [1, -0, 2.5, Number.NaN],
      [Number.POSITIVE_INFINITY, -3, 0.1, Number.NEGATIVE_INFINITY],
      [1e-310, 65504, -1e30, 7],
    ];
    // An unpadded header puts the data at an offset that is not a multiple of 8.
    const m = parseNpy(
      npyBytes(1, header(descr, "(3, 4)", fortran ? "True" : "False"), layout(values, 4, descr, fortran), false),
    );
    expect([m.rows, m.cols]).toEqual([3, 4]);
    expect(m.data).toBeInstanceOf(Float64Array);
    expect(Array.from(m.data)).toEqual(values.flat().map((v) => (descr.endsWith("4") ? Math.fround(v) : v)));
  });

  it.each(LAYOUTS)("reads %s (fortran %s) edge shapes: 1xn, nx1, 0xn, nx0, 0x0", (descr, fortran) => {
    for (const [rows, cols] of [
      [1, 5],
      [5, 1],
      [0, 3],
      [3, 0],
      [0, 0],
    ] as const) {
      const values = Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => 10 * i + j + 0.5));
      const file = npyBytes(
        2,
        header(descr, `(${rows}, ${cols})`, fortran ? "True" : "False"),
        layout(values, cols, descr, fortran),
      );
      const m = parseNpy(file);
      expect([m.rows, m.cols]).toEqual([rows, cols]);
      expect(Array.from(m.data)).toEqual(values.flat());
    }
  });

  it.each([
    [3, 130],
    [130, 3],
    [65, 129],
  ])("transposes a %ix%i Fortran-order file across column bands", (rows, cols) => {
    const values = Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => 1000 * i + j));
    for (const descr of [">f8", "<f4"]) {
      const m = parseNpy(npyBytes(1, header(descr, `(${rows}, ${cols})`, "True"), layout(values, cols, descr, true)));
      expect(Array.from(m.data)).toEqual(values.flat());
    }
  });

  it.each(LAYOUTS)("allocates nothing but the result for %s (fortran %s)", (descr, fortran) => {
    const n = 1024;
    const itemBytes = descr.endsWith("8") ? 8 : 4;
    const file = npyBytes(1, header(descr, `(${n}, ${n})`, fortran ? "True" : "False"), new Uint8Array(n * n * itemBytes));
    // Free earlier tests' buffers first: a collection during the parse would otherwise hide a staging copy.
    collectGarbage();
    const before = process.memoryUsage().arrayBuffers;
    const m = parseNpy(file);
    const grownBytes = process.memoryUsage().arrayBuffers - before;
    // A staging copy of the data (4 or 8 MiB) would show up here: nothing frees it before the next GC.
    expect(m.data.byteLength).toBe(n * n * 8);
    expect(grownBytes).toBeLessThan(m.data.byteLength + 1024 * 1024);
  });

  it("rejects bad magic", () => {
    expectNpyError(new TextEncoder().encode("PK\x03\x04 not npy at all"), /bad magic/);
    expectNpyError(new Uint8Array(), /bad magic/);
  });

  it("rejects unknown format versions", () => {
    const bytes = npyBytes(1, header("<f8", "(1, 1)"), f8([1]));
    bytes[6] = 4;
    expectNpyError(bytes, /version 4\.0/);
  });

  it.each([
    ["<i8", "dtype '<i8' is not supported; expected float64 ('<f8', '>f8') or float32 ('<f4', '>f4')"],
    ["|u1", "dtype '|u1' is not supported"],
    ["|O", "dtype '|O' is not supported"],
    ["=f8", "dtype '=f8' is not supported"],
    [">f2", "dtype '>f2' is not supported"],
    ["<c16", "dtype '<c16' is not supported"],
    ["<f2", "dtype '<f2' is not supported"],
  ])("rejects dtype %s", (descr, message) => {
    expectNpyError(npyBytes(1, header(descr, "(1, 1)"), f8([1])), new RegExp(escapeRegExp(message)));
  });

  it("rejects structured dtypes by name", () => {
    const text = `{'descr': [('x', '<f8'), ('y', '<f8')], 'fortran_order': False, 'shape': (1, 1), }`;
    expectNpyError(npyBytes(1, text, f8([1, 2])), /dtype \[\('x', '<f8'\), \('y', '<f8'\)\] is not supported/);
  });

  it.each([
    ["(3,)", /array must be 2-D, got shape \(3,\)/],
    ["()", /array must be 2-D, got shape \(\)/],
    ["(1, 2, 3)", /array must be 2-D, got shape \(1, 2, 3\)/],
    ["(-1, 2)", /shape is \(-1, 2\)/],
    ["[1, 2]", /shape is \[1, 2\]/],
  ])("rejects shape %s", (shape, pattern) => {
    expectNpyError(npyBytes(1, header("<f8", shape), f8([1, 2, 3, 4, 5, 6])), pattern);
  });

  it("rejects truncated data", () => {
    expectNpyError(
      npyBytes(1, header("<f8", "(2, 2)"), f8([1, 2, 3])),
      /truncated data: shape \(2, 2\) needs 32 bytes, file has 24/,
    );
  });

  it("rejects a truncated header", () => {
    const bytes = npyBytes(1, header("<f8", "(1, 1)"), f8([1]));
    expectNpyError(bytes.subarray(0, 40), /truncated \.npy header/);
    expectNpyError(bytes.subarray(0, 9), /truncated \.npy header length/);
  });

  it.each([
    ["not a dict", "['descr']", /expected a dict/],
    ["garbage", "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1) ]]", /malformed \.npy header/],
    ["unterminated", "{'descr': '<f8", /unterminated string/],
    ["missing key", "{'descr': '<f8', 'shape': (1, 1)}", /keys are \{descr, shape\}/],
    ["extra key", "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), 'x': 1}", /keys are/],
    ["duplicate key", "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (1, 1)}", /duplicate key/],
    ["bad bool", "{'descr': '<f8', 'fortran_order': 0, 'shape': (1, 1)}", /fortran_order is 0/],
    ["call", "{'descr': '<f8', 'fortran_order': False, 'shape': eval('1')}", /malformed/],
  ])("rejects header garbage: %s", (_name, text, pattern) => {
    expectNpyError(npyBytes(1, text, f8([1])), pattern);
  });
});

describe("encodeNpy", () => {
  it("round-trips through parseNpy", () => {
    const data = new Float64Array([1.5, -2, Number.NaN, Number.POSITIVE_INFINITY, 5e-324, -0]);
    const back = parseNpy(encodeNpy({ rows: 3, cols: 2, data }));
    expect(back.rows).toBe(3);
    expect(back.cols).toBe(2);
    expect(Array.from(back.data)).toEqual(Array.from(data));
  });

  it("pads the header to 64 bytes ending in a newline, as numpy does", () => {
    for (const [rows, cols] of [
      [1, 1],
      [3, 4],
      [1000, 12345],
      [99999, 1],
    ] as const) {
      const bytes = encodeNpy({ rows, cols, data: new Float64Array(rows * cols) }).subarray(0, 200);
      const headerLength = new DataView(bytes.buffer).getUint16(8, true);
      expect((10 + headerLength) % 64).toBe(0);
      expect(bytes[10 + headerLength - 1]).toBe(0x0a);
      expect(bytes[6]).toBe(1);
    }
  });

  it("encodes a view at an offset of a larger buffer", () => {
    const big = new Float64Array([9, 9, 1, 2, 3, 4, 9]);
    const view = big.subarray(2, 6);
    const back = parseNpy(encodeNpy({ rows: 2, cols: 2, data: view }));
    expect(Array.from(back.data)).toEqual([1, 2, 3, 4]);
  });

  it("rejects data whose length does not match the shape", () => {
    expect(() => encodeNpy({ rows: 2, cols: 2, data: new Float64Array(3) })).toThrow(RangeError);
    expect(() => encodeNpy({ rows: -1, cols: 2, data: new Float64Array(0) })).toThrow(RangeError);
  });
});

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

describe("parseNpyInPlace and npyHeader (the CLI's copy-free paths)", () => {
  const m = { rows: 3, cols: 5, data: Float64Array.from({ length: 15 }, (_, i) => i * 1.5 - 4) };

  it("npyHeader followed by the data's bytes is encodeNpy's file", () => {
    const parts = Buffer.concat([npyHeader(m), new Uint8Array(m.data.buffer)]);
    expect(parts.equals(encodeNpy(m))).toBe(true);
  });

  it("reads an aligned <f8 C-order file in place: the matrix views the file's bytes", () => {
    const file = encodeNpy(m);
    const parsed = parseNpyInPlace(file);
    expect(parsed.data).toEqual(m.data);
    expect(parsed.data.buffer).toBe(file.buffer);
    expect(parseNpy(file).data.buffer).not.toBe(file.buffer);
  });

  it("copies when the data is not 8-byte aligned in the buffer, and for any other layout", () => {
    const file = encodeNpy(m);
    const shifted = new Uint8Array(file.byteLength + 4).subarray(4);
    shifted.set(file);
    const parsed = parseNpyInPlace(shifted);
    expect(parsed.data).toEqual(m.data);
    expect(parsed.data.buffer).not.toBe(shifted.buffer);
    const f32 = npyBytes(
      1,
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }",
      new Uint8Array(new Float32Array(15).buffer),
    );
    expect(parseNpyInPlace(f32).data.buffer).not.toBe(f32.buffer);
  });
});
