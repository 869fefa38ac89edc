/**
 * Random messages for the independent client: @grpc/grpc-js with @grpc/proto-loader
 * reading the .proto files, sharing no code with the repo's generated TypeScript.
 */
import type { PackageDefinition } from "@grpc/proto-loader";
import fc from "fast-check";
import { LONE_SURROGATES, UNICODE_STRINGS } from "./proto-arbitraries.js";

interface FieldProto {
  name: string;
  label: string;
  type: string;
  typeName: string;
}
interface MessageProto {
  field: FieldProto[];
}

/** One RPC as proto-loader describes it. */
export interface LoadedMethod {
  readonly service: string;
  readonly name: string;
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly requestType: string;
  /** proto-loader's (protobufjs) encoder; throws on values it cannot encode. */
  readonly serialize: (value: object) => Buffer;
}

/** Every method of every service in a proto-loader package definition. */
export function loadedMethods(def: PackageDefinition): LoadedMethod[] {
  const out: LoadedMethod[] = [];
  for (const [typeName, entry] of Object.entries(def)) {
    if ("format" in entry) continue; // a message or enum type
    for (const [name, m] of Object.entries(entry)) {
      const requestType = (m.requestType as { type: { name?: string } }).type;
      out.push({
        service: typeName,
        name,
        path: m.path,
        requestStream: m.requestStream,
        responseStream: m.responseStream,
        requestType: `${typeName.slice(0, typeName.lastIndexOf("."))}.${requestType.name ?? ""}`,
        serialize: m.requestSerialize as (value: object) => Buffer,
      });
    }
  }
  return out;
}

/** Numbers a JavaScript caller may put in any numeric field: NaN, infinities, negatives, fractions, huge. */
const WILD_NUMBERS = [
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  -1,
  -0,
  0.5,
  1e300,
  2 ** 53 + 2,
  -(2 ** 63),
];
const NUMERIC_STRINGS = ["0", "1", "-1", "18446744073709551615", "18446744073709551616", "9007199254740993", "NaN", "1e400"];

function lookup(def: PackageDefinition, from: string, typeName: string): MessageProto | undefined {
  const pkg = from.slice(0, from.lastIndexOf("."));
  const name = typeName.startsWith(".") ? typeName.slice(1) : typeName;
  const entry = def[`${pkg}.${name}`] ?? def[name];
  if (!entry || !("format" in entry) || entry.format !== "Protocol Buffer 3 DescriptorProto") return undefined;
  return entry.type as unknown as MessageProto;
}

function fieldValue(
  def: PackageDefinition,
  owner: string,
  f: FieldProto,
  strings: readonly string[],
  depth: number,
): fc.Arbitrary<unknown> {
  const ints = fc.oneof(fc.integer({ min: 0, max: 64 }), fc.constantFrom(...WILD_NUMBERS), fc.constantFrom(0xffff_ffff, 2 ** 31));
  switch (f.type) {
    case "TYPE_STRING":
      // protobufjs writes a lone surrogate as three bytes that are not UTF-8; the server reads U+FFFD.
      return fc.oneof(
        fc.constantFrom(...strings),
        fc.string({ maxLength: 16 }),
        fc.constant("q".repeat(70_000)),
        fc.constantFrom(...UNICODE_STRINGS, ...LONE_SURROGATES),
      );
    case "TYPE_BYTES":
      return fc.oneof(
        fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
        fc.constant(Buffer.alloc(128)),
      );
    case "TYPE_BOOL":
      return fc.oneof(fc.boolean(), fc.constantFrom(0, 1, "true"));
    case "TYPE_UINT64":
    case "TYPE_INT64":
    case "TYPE_FIXED64":
    case "TYPE_SINT64":
    case "TYPE_SFIXED64":
      return fc.oneof(ints, fc.constantFrom(...NUMERIC_STRINGS));
    case "TYPE_DOUBLE":
    case "TYPE_FLOAT":
      return fc.oneof(fc.double(), fc.constantFrom(...WILD_NUMBERS));
    case "TYPE_ENUM":
      return fc.oneof(fc.integer({ min: 0, max: 5 }), fc.constantFrom(-1, 99, 0x7fff_ffff));
    case "TYPE_MESSAGE": {
      const nested = lookup(def, owner, f.typeName);
      if (!nested || depth > 3) return fc.constant({});
      const ownerName = owner.slice(0, owner.lastIndexOf(".") + 1) + f.typeName.replace(/^\./, "");
      return objectArb(def, ownerName, nested, strings, depth + 1);
    }
    default:
      return ints;
  }
}

function objectArb(
  def: PackageDefinition,
  typeName: string,
  msg: MessageProto,
  strings: readonly string[],
  depth: number,
): fc.Arbitrary<Record<string, unknown>> {
  const parts: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of msg.field) {
    const one = fieldValue(def, typeName, f, strings, depth);
    const value = f.label === "LABEL_REPEATED" ? fc.array(one, { maxLength: 3 }) : one;
    parts[f.name] = fc.option(value, { nil: undefined, freq: 4 });
  }
  return fc.record(parts).map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)));
}

/** Random plain objects for `method`'s request, as a JavaScript caller of grpc-js could pass them. */
export function requestObjectArb(
  def: PackageDefinition,
  method: LoadedMethod,
  strings: readonly string[],
): fc.Arbitrary<Record<string, unknown>> {
  const msg = lookup(def, method.requestType, method.requestType.slice(method.requestType.lastIndexOf(".") + 1));
  if (!msg) throw new Error(`no message type ${method.requestType}`);
  return objectArb(def, method.requestType, msg, strings, 0);
}
