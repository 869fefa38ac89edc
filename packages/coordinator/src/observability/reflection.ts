import { type DescFile, type DescService, toBinary } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import { quote } from "@dce/core";
import { ServerReflection as ServerReflectionV1 } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** The question part of a reflection request; the same shape in v1 and v1alpha. */
type ReflectionQuestion =
  | { case: "fileByFilename"; value: string }
  | { case: "fileContainingSymbol"; value: string }
  | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
  | { case: "allExtensionNumbersOfType"; value: string }
  | { case: "listServices"; value: string }
  | { case: undefined; value?: undefined };

/** The answer part of a reflection response, as an init shape valid for v1 and v1alpha. */
type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/** Everything reflection can answer about, built from the services on a router. */
interface ReflectionIndex {
  readonly services: readonly string[];
  /** File name ("dce/v1/job.proto") → file. */
  readonly files: ReadonlyMap<string, DescFile>;
  /** Fully-qualified symbol (type, service, method) → the file declaring it. */
  readonly symbols: ReadonlyMap<string, DescFile>;
  /** "extendee#number" → the file declaring the extension. */
  readonly extensions: ReadonlyMap<string, DescFile>;
  /** Extendee → extension numbers. */
  readonly extensionNumbers: ReadonlyMap<string, number[]>;
}

/** Builds the index of `services`, their files and every file those import, transitively. */
function buildIndex(services: readonly DescService[]): ReflectionIndex {
  const files = new Map<string, DescFile>();
  const symbols = new Map<string, DescFile>();
  const extensions = new Map<string, DescFile>();
  const extensionNumbers = new Map<string, number[]>();
  const addFile = (file: DescFile) => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    for (const type of nestedTypes(file)) {
      symbols.set(type.typeName, file);
      if (type.kind === "service") for (const m of type.methods) symbols.set(`${type.typeName}.${m.name}`, file);
      if (type.kind === "extension") {
        extensions.set(`${type.extendee.typeName}#${type.number}`, file);
        const list = extensionNumbers.get(type.extendee.typeName) ?? [];
        list.push(type.number);
        extensionNumbers.set(type.extendee.typeName, list);
      }
    }
    for (const dep of file.dependencies) addFile(dep);
  };
  const names = new Set<string>();
  for (const s of services) {
    names.add(s.typeName);
    addFile(s.file);
  }
  return { services: [...names].sort(), files, symbols, extensions, extensionNumbers };
}

/** Finds the file declaring `symbol`, also for members (fields, enum values) by dropping trailing name parts. */
function fileOfSymbol(index: ReflectionIndex, symbol: string): DescFile | undefined {
  let name = symbol.startsWith(".") ? symbol.slice(1) : symbol;
  for (;;) {
    const file = index.symbols.get(name);
    if (file) return file;
    const dot = name.lastIndexOf(".");
    if (dot <= 0) return undefined;
    name = name.slice(0, dot);
  }
}

const notFound = (what: string): ReflectionAnswer => ({
  case: "errorResponse",
  value: { errorCode: Code.NotFound, errorMessage: `${what} not found` },
});

/**
 * Answers one question. `sent` holds the files already sent on this stream: the
 * specification lets a server skip them, and clients ask for missing imports by name.
 */
function answer(
  index: ReflectionIndex,
  q: ReflectionQuestion,
  sent: Set<string>,
  encode: (f: DescFile) => Uint8Array,
): ReflectionAnswer {
  const withImports = (file: DescFile): ReflectionAnswer => {
    const out: Uint8Array[] = [encode(file)];
    sent.add(file.proto.name);
    const visit = (f: DescFile) => {
      for (const dep of f.dependencies) {
        if (sent.has(dep.proto.name)) continue;
        sent.add(dep.proto.name);
        out.push(encode(dep));
        visit(dep);
      }
    };
    visit(file);
    return { case: "fileDescriptorResponse", value: { fileDescriptorProto: out } };
  };
  const clip = (s: string) => quote(s, 256);
  switch (q.case) {
    case "listServices":
      return { case: "listServicesResponse", value: { service: index.services.map((name) => ({ name })) } };
    case "fileByFilename": {
      const file = index.files.get(q.value);
      return file ? withImports(file) : notFound(`file ${clip(q.value)}`);
    }
    case "fileContainingSymbol": {
      const file = fileOfSymbol(index, q.value);
      return file ? withImports(file) : notFound(`symbol ${clip(q.value)}`);
    }
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = q.value;
      const file = index.extensions.get(`${containingType}#${extensionNumber}`);
      return file ? withImports(file) : notFound(`extension ${clip(containingType)}#${extensionNumber}`);
    }
    case "allExtensionNumbersOfType": {
      if (!index.symbols.has(q.value)) return notFound(`type ${clip(q.value)}`);
      const numbers = [...(index.extensionNumbers.get(q.value) ?? [])].sort((a, b) => a - b);
      return { case: "allExtensionNumbersResponse", value: { baseTypeName: q.value, extensionNumber: numbers } };
    }
    default:
      return {
        case: "errorResponse",
        value: { errorCode: Code.InvalidArgument, errorMessage: "the request names no question" },
      };
  }
}

/**
 * Registers gRPC server reflection on `router`, as `grpc.reflection.v1.ServerReflection`
 * and its older name `grpc.reflection.v1alpha.ServerReflection`, so grpcurl and
 * `buf curl` work without the schema.
 *
 * It describes every service registered on `router` (read at the first request, so
 * register it last or first, as you like), their files and the files those import:
 * `list_services`, `file_by_filename`, `file_containing_symbol` (services, methods,
 * messages, enums and their members), `file_containing_extension` and
 * `all_extension_numbers_of_type`. A question it cannot answer gets an
 * `error_response` (NOT_FOUND or INVALID_ARGUMENT) and the stream goes on.
 */
export function registerReflectionService(router: ConnectRouter): void {
  let index: ReflectionIndex | undefined;
  const encoded = new Map<DescFile, Uint8Array>();
  const encode = (f: DescFile) => {
    let bytes = encoded.get(f);
    if (!bytes) {
      bytes = toBinary(FileDescriptorProtoSchema, f.proto);
      encoded.set(f, bytes);
    }
    return bytes;
  };
  const getIndex = () => {
    index ??= buildIndex(router.handlers.map((h) => h.service));
    return index;
  };
  router.service(ServerReflectionV1, {
    async *serverReflectionInfo(requests) {
      const sent = new Set<string>();
      for await (const req of requests) {
        const messageResponse = answer(getIndex(), req.messageRequest, sent, encode);
        yield { validHost: req.host, originalRequest: req, messageResponse };
      }
    },
  });
  router.service(ServerReflectionV1alpha, {
    async *serverReflectionInfo(requests) {
      const sent = new Set<string>();
      for await (const req of requests) {
        const messageResponse = answer(getIndex(), req.messageRequest, sent, encode);
        yield { validHost: req.host, originalRequest: req, messageResponse };
      }
    },
  });
}
