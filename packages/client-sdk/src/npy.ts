/**
 * Reading and writing NumPy `.npy` files (format versions 1.0, 2.0 and 3.0).
 *
 * Only 2-D, C-order, little-endian float64 (`<f8`) and float32 (`<f4`, upcast
 * on read) arrays are supported: that is what dce multiplies. See
 * https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 *
 * @packageDocumentation
 */
import { NpyFormatError } from "./errors.js";
import { assertLittleEndianHost } from "./internal/host.js";
import type { Matrix } from "./types.js";

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"
const MAGIC_LENGTH = MAGIC.length;
// numpy pads the header so that the data starts at a multiple of 64 bytes.
const ARRAY_ALIGN_BYTES = 64;
// numpy leaves room for the growth axis to reach 21 digits; encodeNpy copies
// this so its output is byte-identical to numpy.save (pinned by "matches numpy.save bytes").
const GROWTH_AXIS_MAX_DIGITS = 21;

/**
 * Parses a NumPy `.npy` file holding a 2-D float64 or float32 array.
 *
 * Accepts format versions 1.0, 2.0 and 3.0, dtype `<f8` and `<f4` (float32 is
 * upcast to float64), and C order only. The result owns a fresh, aligned
 * `Float64Array`: it never aliases `bytes`. Zero-sized dimensions are parsed;
 * the SDK rejects them when the matrix is used. Bytes after the data are
 * ignored, as numpy does.
 *
 * @param bytes - The whole file.
 * @returns The matrix, row-major.
 * @throws {@link NpyFormatError} with a one-line message naming the problem:
 *   bad magic, unknown version, truncated or unparsable header, unsupported
 *   dtype, `fortran_order: True`, a shape that is not 2-D, or truncated data.
 */
export function parseNpy(bytes: Uint8Array): Matrix {
  assertLittleEndianHost();
  if (bytes.length < MAGIC_LENGTH + 2 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new NpyFormatError("not a .npy file: bad magic (expected \\x93NUMPY)");
  }
  const major = bytes[6] ?? 0;
  const minor = bytes[7] ?? 0;
  if (!((major === 1 || major === 2 || major === 3) && minor === 0)) {
    throw new NpyFormatError(`unsupported .npy format version ${major}.${minor}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lengthFieldBytes = major === 1 ? 2 : 4;
  const headerStart = MAGIC_LENGTH + 2 + lengthFieldBytes;
  if (bytes.length < headerStart) {
    throw new NpyFormatError("truncated .npy header length");
  }
  const headerLength = major === 1 ? view.getUint16(MAGIC_LENGTH + 2, true) : view.getUint32(MAGIC_LENGTH + 2, true);
  const dataStart = headerStart + headerLength;
  if (bytes.length < dataStart) {
    throw new NpyFormatError(`truncated .npy header: declares ${headerLength} bytes, file has ${bytes.length - headerStart}`);
  }
  // Versions 1 and 2 use latin1 headers, version 3 utf8.
  const headerText = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(bytes.subarray(headerStart, dataStart));
  const header = parseHeader(headerText);

  const itemBytes = header.descr === "<f8" ? 8 : 4;
  const count = header.rows * header.cols;
  const dataBytes = count * itemBytes;
  if (!Number.isSafeInteger(dataBytes)) {
    throw new NpyFormatError(`shape (${header.rows}, ${header.cols}) is too large`);
  }
  const available = bytes.length - dataStart;
  if (available < dataBytes) {
    throw new NpyFormatError(
      `truncated data: shape (${header.rows}, ${header.cols}) needs ${dataBytes} bytes, file has ${available}`,
    );
  }
  // Copy into a fresh ArrayBuffer, so the typed array below is aligned even
  // when the data offset inside `bytes` is not a multiple of 8. Not
  // bytes.slice(): on a Node Buffer that is a view of the shared pool.
  const copy = new ArrayBuffer(dataBytes);
  new Uint8Array(copy).set(bytes.subarray(dataStart, dataStart + dataBytes));
  const data = header.descr === "<f8" ? new Float64Array(copy) : Float64Array.from(new Float32Array(copy));
  return { rows: header.rows, cols: header.cols, data };
}

/**
 * Encodes a matrix as a NumPy `.npy` file, byte-identical to what `numpy.save`
 * writes for a C-order float64 array: format 1.0, dtype `<f8`, header padded
 * with spaces and a final `\n` so the data starts at a multiple of 64 bytes.
 *
 * @param m - The matrix; `m.data.length` must equal `rows * cols`.
 * @returns The whole file.
 * @throws `RangeError` if the shape is not two non-negative integers matching
 *   `data.length`, or the header would not fit format 1.0.
 */
export function encodeNpy(m: Matrix): Uint8Array {
  assertLittleEndianHost();
  const { rows, cols, data } = m;
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows < 0 || cols < 0) {
    throw new RangeError(`invalid shape ${rows}x${cols}: rows and cols must be non-negative integers`);
  }
  if (data.length !== rows * cols) {
    throw new RangeError(`data has ${data.length} elements, shape ${rows}x${cols} needs ${rows * cols}`);
  }
  // Same text and padding as numpy.lib.format._write_array_header / _wrap_header.
  let dict = `{'descr': '<f8', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  dict += " ".repeat(Math.max(0, GROWTH_AXIS_MAX_DIGITS - String(rows).length));
  const prefixBytes = MAGIC_LENGTH + 2 + 2;
  const unpadded = dict.length + 1; // + "\n"
  const padding = ARRAY_ALIGN_BYTES - ((prefixBytes + unpadded) % ARRAY_ALIGN_BYTES);
  const headerLength = unpadded + padding;
  if (headerLength > 0xffff) {
    throw new RangeError("npy header too long for format 1.0");
  }
  const out = new Uint8Array(prefixBytes + headerLength + data.byteLength);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, headerLength, true);
  const headerText = `${dict}${" ".repeat(padding)}\n`;
  for (let i = 0; i < headerText.length; i++) out[prefixBytes + i] = headerText.charCodeAt(i);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), prefixBytes + headerLength);
  return out;
}

interface NpyHeader {
  descr: "<f8" | "<f4";
  rows: number;
  cols: number;
}

/** Validates the header dictionary against what dce supports. */
function parseHeader(text: string): NpyHeader {
  const value = parsePythonLiteral(text);
  if (value.kind !== "dict") {
    throw new NpyFormatError(`malformed .npy header: expected a dict, got ${reprShort(value)}`);
  }
  const keys = [...value.entries.keys()].sort();
  if (keys.join(",") !== "descr,fortran_order,shape") {
    // Keys come from the file: keep the message on one short line (found by npy.prop.test.ts).
    const shown = oneLine(keys.join(", "));
    throw new NpyFormatError(`malformed .npy header: keys are {${shown}}, expected {descr, fortran_order, shape}`);
  }
  const descr = value.entries.get("descr");
  const fortranOrder = value.entries.get("fortran_order");
  const shape = value.entries.get("shape");
  if (descr === undefined || fortranOrder === undefined || shape === undefined) {
    throw new NpyFormatError("malformed .npy header: missing key");
  }
  if (descr.kind !== "str" || (descr.value !== "<f8" && descr.value !== "<f4")) {
    throw new NpyFormatError(`dtype ${reprShort(descr)} is not supported; expected float64 ('<f8') or float32 ('<f4')`);
  }
  if (fortranOrder.kind !== "bool") {
    throw new NpyFormatError(`malformed .npy header: fortran_order is ${reprShort(fortranOrder)}`);
  }
  if (fortranOrder.value) {
    throw new NpyFormatError("fortran_order: True is not supported; save the array in C order");
  }
  if (shape.kind !== "tuple" || !shape.items.every((d) => d.kind === "int" && d.value >= 0)) {
    throw new NpyFormatError(`malformed .npy header: shape is ${reprShort(shape)}`);
  }
  if (shape.items.length !== 2) {
    throw new NpyFormatError(`array must be 2-D, got shape ${reprShort(shape)}`);
  }
  const [rows, cols] = shape.items;
  if (rows?.kind !== "int" || cols?.kind !== "int") {
    throw new NpyFormatError(`malformed .npy header: shape is ${reprShort(shape)}`);
  }
  return { descr: descr.value, rows: rows.value, cols: cols.value };
}

// The subset of Python literals an .npy header can hold (numpy reads it with
// ast.literal_eval). Structured dtypes use lists of tuples, so those parse too
// and are then rejected by name.
type PyValue =
  | { kind: "str"; value: string }
  | { kind: "int"; value: number }
  | { kind: "bool"; value: boolean }
  | { kind: "none" }
  | { kind: "tuple"; items: PyValue[] }
  | { kind: "list"; items: PyValue[] }
  | { kind: "dict"; entries: Map<string, PyValue> };

function repr(v: PyValue): string {
  switch (v.kind) {
    case "str":
      return `'${v.value}'`;
    case "int":
      return String(v.value);
    case "bool":
      return v.value ? "True" : "False";
    case "none":
      return "None";
    case "tuple":
      return v.items.length === 1 ? `(${repr(v.items[0] as PyValue)},)` : `(${v.items.map(repr).join(", ")})`;
    case "list":
      return `[${v.items.map(repr).join(", ")}]`;
    case "dict":
      return `{${[...v.entries].map(([k, x]) => `'${k}': ${repr(x)}`).join(", ")}}`;
  }
}

/** Text from the file, cut to keep error messages on one short line. */
function oneLine(text: string): string {
  const flat = text.replace(/[\r\n]/g, " ");
  return flat.length > 60 ? `${flat.slice(0, 57)}...` : flat;
}

/** repr() cut to keep error messages on one short line. */
function reprShort(v: PyValue): string {
  return oneLine(repr(v));
}

function parsePythonLiteral(text: string): PyValue {
  let pos = 0;
  const fail = (what: string): never => {
    throw new NpyFormatError(`malformed .npy header: ${what} at offset ${pos}`);
  };
  const skipSpace = (): void => {
    while (pos < text.length && /\s/.test(text[pos] as string)) pos++;
  };
  const parseValue = (depth: number): PyValue => {
    if (depth > 16) fail("nesting too deep");
    skipSpace();
    const c = text[pos];
    if (c === undefined) return fail("unexpected end");
    if (c === "'" || c === '"') return parseString(c);
    if (c === "(") return { kind: "tuple", items: parseSequence(")", depth) };
    if (c === "[") return { kind: "list", items: parseSequence("]", depth) };
    if (c === "{") return parseDict(depth);
    if (/[0-9+-]/.test(c)) return parseInt_();
    for (const [word, value] of [
      ["True", { kind: "bool", value: true }],
      ["False", { kind: "bool", value: false }],
      ["None", { kind: "none" }],
    ] as const) {
      if (text.startsWith(word, pos)) {
        pos += word.length;
        return value;
      }
    }
    return fail(`unexpected ${JSON.stringify(c)}`);
  };
  const parseString = (quote: string): PyValue => {
    pos++;
    let value = "";
    while (pos < text.length && text[pos] !== quote) {
      if (text[pos] === "\n") fail("unterminated string");
      if (text[pos] === "\\") fail("escape sequences in strings are not supported");
      value += text[pos];
      pos++;
    }
    if (pos >= text.length) fail("unterminated string");
    pos++;
    return { kind: "str", value };
  };
  const parseInt_ = (): PyValue => {
    const match = /^[+-]?[0-9]+L?/.exec(text.slice(pos));
    if (match === null) return fail("bad number");
    pos += match[0].length;
    const value = Number(match[0].replace("L", ""));
    if (!Number.isSafeInteger(value)) fail(`integer ${match[0]} out of range`);
    return { kind: "int", value };
  };
  const parseSequence = (close: string, depth: number): PyValue[] => {
    pos++;
    const items: PyValue[] = [];
    for (;;) {
      skipSpace();
      if (text[pos] === close) {
        pos++;
        return items;
      }
      items.push(parseValue(depth + 1));
      skipSpace();
      if (text[pos] === ",") pos++;
      else if (text[pos] !== close) fail(`expected ',' or '${close}'`);
    }
  };
  const parseDict = (depth: number): PyValue => {
    pos++;
    const entries = new Map<string, PyValue>();
    for (;;) {
      skipSpace();
      if (text[pos] === "}") {
        pos++;
        return { kind: "dict", entries };
      }
      const key = parseValue(depth + 1);
      if (key.kind !== "str") fail("dict key is not a string");
      skipSpace();
      if (text[pos] !== ":") fail("expected ':'");
      pos++;
      const value = parseValue(depth + 1);
      if (key.kind === "str") {
        if (entries.has(key.value)) fail(`duplicate key '${key.value}'`);
        entries.set(key.value, value);
      }
      skipSpace();
      if (text[pos] === ",") pos++;
      else if (text[pos] !== "}") fail("expected ',' or '}'");
    }
  };
  const value = parseValue(0);
  skipSpace();
  if (pos !== text.length) fail("trailing characters");
  return value;
}
