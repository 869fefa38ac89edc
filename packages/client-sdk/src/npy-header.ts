/**
 * The header dictionary of a NumPy `.npy` file: a small Python-literal parser
 * (numpy reads the header with `ast.literal_eval`) and the checks of what dce
 * supports. Private to the SDK; `npy.ts` is the public surface.
 *
 * @packageDocumentation
 */
import { NpyFormatError } from "./errors.js";

/** What the header says about the array, once validated. */
export interface NpyHeader {
  /** Byte order (`<` little, `>` big) and float width in bytes. */
  descr: NpyDescr;
  /** True when the data is stored column by column. */
  fortranOrder: boolean;
  rows: number;
  cols: number;
}

/** The dtypes dce reads: float64 and float32, either byte order. */
export type NpyDescr = "<f8" | ">f8" | "<f4" | ">f4";

const SUPPORTED_DESCRS: readonly string[] = ["<f8", ">f8", "<f4", ">f4"] satisfies NpyDescr[];

function isSupportedDescr(descr: string): descr is NpyDescr {
  return SUPPORTED_DESCRS.includes(descr);
}

/**
 * Parses and validates the header dictionary against what dce supports.
 *
 * @throws {@link NpyFormatError} with a one-line message.
 */
export function parseHeader(text: string): NpyHeader {
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
  if (descr.kind !== "str" || !isSupportedDescr(descr.value)) {
    throw new NpyFormatError(
      `dtype ${reprShort(descr)} is not supported; expected float64 ('<f8', '>f8') or float32 ('<f4', '>f4')`,
    );
  }
  if (fortranOrder.kind !== "bool") {
    throw new NpyFormatError(`malformed .npy header: fortran_order is ${reprShort(fortranOrder)}`);
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
  return { descr: descr.value, fortranOrder: fortranOrder.value, rows: rows.value, cols: cols.value };
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
