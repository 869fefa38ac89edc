import { fc, test as propTest } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { NpyFormatError } from "./errors.js";
import { encodeNpy, parseNpy } from "./npy.js";

/**
 * Fuzzes the .npy reader: whatever the bytes, parseNpy returns a consistent matrix or
 * throws NpyFormatError with a one-line message, quickly (no hang, no other error,
 * no allocation the file does not back). A failing case prints its seed; replay with
 * `{ seed, path }` in the test's parameters.
 */

/** Longest a single parse may take, even of a 1 MiB header. */
const MAX_PARSE_MS = 1_000;

function checkParse(bytes: Uint8Array): void {
  const t0 = performance.now();
  try {
    const m = parseNpy(bytes);
    expect(Number.isSafeInteger(m.rows) && m.rows >= 0).toBe(true);
    expect(Number.isSafeInteger(m.cols) && m.cols >= 0).toBe(true);
    expect(m.data.length).toBe(m.rows * m.cols);
    // Every value came from the file: the data cannot be larger than the file (float32 upcast doubles it).
    expect(m.data.length * 4).toBeLessThanOrEqual(bytes.length);
  } catch (e) {
    expect(e).toBeInstanceOf(NpyFormatError);
    const message = (e as Error).message;
    expect(message.length).toBeGreaterThan(0);
    expect(message).not.toMatch(/[\r\n]/);
    expect(message.length).toBeLessThan(400);
  }
  expect(performance.now() - t0).toBeLessThan(MAX_PARSE_MS);
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];

/** An .npy file with any version, header text and payload, its header length field as written or overridden. */
function npyFile(version: number, header: string, payload: Uint8Array, lengthOverride?: number): Uint8Array {
  const text = new TextEncoder().encode(header);
  const lengthBytes = version === 1 ? 2 : 4;
  const out = new Uint8Array(8 + lengthBytes + text.length + payload.length);
  out.set(MAGIC);
  out[6] = version;
  out[7] = 0;
  const view = new DataView(out.buffer);
  const length = lengthOverride ?? text.length;
  if (lengthBytes === 2) view.setUint16(8, length & 0xffff, true);
  else view.setUint32(8, length >>> 0, true);
  out.set(text, 8 + lengthBytes);
  out.set(payload, 8 + lengthBytes + text.length);
  return out;
}

/** Header text pieces, valid and not: the parser sees every mix of them. */
const TOKENS = [
  "{",
  "}",
  "(",
  ")",
  "[",
  "]",
  ",",
  ":",
  " ",
  "\n",
  "'descr'",
  "'<f8'",
  "'<f4'",
  "'>f8'",
  "'>f4'",
  "'|u1'",
  "'fortran_order'",
  "False",
  "True",
  "None",
  "'shape'",
  "0",
  "1",
  "-1",
  "3",
  "99999999999999999999",
  "4294967296",
  "1e5",
  "NaN",
  "inf",
  "'",
  '"',
  "\\",
  "L",
  "\u0000",
  "é",
];

const headerSoup = fc.array(fc.constantFrom(...TOKENS), { maxLength: 60 }).map((t) => t.join(""));

const shapeText = fc
  .tuple(
    fc.oneof(fc.integer({ min: 0, max: 6 }), fc.constantFrom(-1, 2 ** 31, 2 ** 53, 2 ** 60)),
    fc.oneof(fc.integer({ min: 0, max: 6 }), fc.constantFrom(-1, 2 ** 32, 2 ** 53 + 1)),
  )
  .map(([r, c]) => [r, c, `(${r}, ${c})`] as const);

const smallMatrix = fc
  .tuple(fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 6 }))
  .chain(([rows, cols]) =>
    fc
      .array(fc.double(), { minLength: rows * cols, maxLength: rows * cols })
      .map((values) => ({ rows, cols, data: Float64Array.from(values) })),
  );

/** Writes `m` as an .npy file with any float dtype, byte order and memory order, as numpy lays it out. */
function encodeAs(m: { rows: number; cols: number; data: Float64Array }, descr: string, fortran: boolean): Uint8Array {
  const { rows, cols, data } = m;
  const itemBytes = descr.endsWith("8") ? 8 : 4;
  const littleEndian = descr.startsWith("<");
  const payload = new Uint8Array(rows * cols * itemBytes);
  const view = new DataView(payload.buffer);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const offset = (fortran ? j * rows + i : i * cols + j) * itemBytes;
      const v = data[i * cols + j] as number;
      if (itemBytes === 8) view.setFloat64(offset, v, littleEndian);
      else view.setFloat32(offset, v, littleEndian);
    }
  }
  const header = `{'descr': '${descr}', 'fortran_order': ${fortran ? "True" : "False"}, 'shape': (${rows}, ${cols}), }\n`;
  return npyFile(1, header, payload);
}

/**
 * Matrices up to 70x140, past the reader's band of 64 columns, filled with random bit
 * patterns (so NaNs, infinities, subnormals and -0 all occur) from a seeded xorshift.
 */
const wideMatrix = fc
  .record({ rows: fc.integer({ min: 0, max: 70 }), cols: fc.integer({ min: 0, max: 140 }), seed: fc.integer({ min: 1 }) })
  .map(({ rows, cols, seed }) => {
    const bits = new Uint32Array(rows * cols * 2);
    let x = seed;
    for (let k = 0; k < bits.length; k++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      bits[k] = x >>> 0;
    }
    return { rows, cols, data: new Float64Array(bits.buffer) };
  });

describe("parseNpy under fuzzing", () => {
  propTest.prop([fc.uint8Array({ maxLength: 512 })], { numRuns: 2000 })("random bytes", (bytes) => {
    checkParse(bytes);
  });

  propTest.prop([fc.uint8Array({ maxLength: 512 })], { numRuns: 2000 })("random bytes after the magic", (tail) => {
    const bytes = new Uint8Array(MAGIC.length + tail.length);
    bytes.set(MAGIC);
    bytes.set(tail, MAGIC.length);
    checkParse(bytes);
  });

  propTest.prop([fc.constantFrom(1, 2, 3, 0, 4, 255), headerSoup, fc.uint8Array({ maxLength: 256 })], { numRuns: 3000 })(
    "random header text",
    (version, header, payload) => {
      checkParse(npyFile(version, header, payload));
    },
  );

  propTest.prop(
    [
      fc.constantFrom(1, 2, 3),
      fc.constantFrom("'<f8'", "'<f4'", "'>f8'", "'>f4'", "'<i8'", "'f8'", "[('a', '<f8')]"),
      fc.constantFrom("False", "True", "0", "None"),
      shapeText,
      fc.integer({ min: 0, max: 400 }),
      fc.option(fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.constantFrom(0xffff_ffff, 2 ** 31)), { nil: undefined }),
    ],
    { numRuns: 3000 },
  )(
    "plausible headers with wrong dtypes, orders, shapes, payload sizes and header lengths",
    (version, descr, fortran, [, , shape], payloadBytes, lengthOverride) => {
      const header = `{'descr': ${descr}, 'fortran_order': ${fortran}, 'shape': ${shape}, }`;
      checkParse(npyFile(version, header, new Uint8Array(payloadBytes), lengthOverride));
    },
  );

  propTest.prop(
    [
      smallMatrix,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
      fc.option(fc.nat(), { nil: undefined }),
    ],
    { numRuns: 3000 },
  )("valid files with bytes changed or cut", (m, edits, cut) => {
    const bytes = encodeNpy(m);
    for (const [at, v] of edits) bytes[at % bytes.length] = v;
    checkParse(cut === undefined ? bytes : bytes.subarray(0, cut % (bytes.length + 1)));
  });

  propTest.prop([smallMatrix], { numRuns: 500 })("encodeNpy then parseNpy gives back the same matrix", (m) => {
    const back = parseNpy(encodeNpy(m));
    expect([back.rows, back.cols]).toEqual([m.rows, m.cols]);
    expect(Buffer.from(back.data.buffer).equals(Buffer.from(m.data.buffer))).toBe(true);
  });

  propTest.prop([fc.oneof(smallMatrix, wideMatrix), fc.constantFrom("<f8", ">f8", "<f4", ">f4"), fc.boolean()], {
    numRuns: 300,
  })("any float dtype, byte order and memory order reads back as the same float64 values, row-major", (m, descr, fortran) => {
    const back = parseNpy(encodeAs(m, descr, fortran));
    expect([back.rows, back.cols]).toEqual([m.rows, m.cols]);
    // float32 files hold the float32 rounding of each value; NaN equals NaN, -0 differs from 0.
    const expected = descr.endsWith("4") ? Array.from(m.data, Math.fround) : Array.from(m.data);
    expect(Array.from(back.data)).toEqual(expected);
  });

  propTest.prop([fc.constantFrom("(", "[", "{'a': ("), fc.integer({ min: 1_000, max: 200_000 })], { numRuns: 20 })(
    "deeply nested or huge headers fail fast",
    (open, n) => {
      checkParse(npyFile(3, open.repeat(n), new Uint8Array(0)));
      checkParse(npyFile(2, `{'descr': '<f8', 'fortran_order': False, 'shape': (${"1, ".repeat(n)}), }`, new Uint8Array(0)));
    },
  );
});
