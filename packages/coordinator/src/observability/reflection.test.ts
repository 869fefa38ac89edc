import { create, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { JobService } from "@dce/proto";
import { afterEach, describe, expect, it } from "vitest";
import type { Coordinator } from "../coordinator.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/grpc/health/v1/health_pb.js";
import {
  ExtensionRequestSchema,
  ServerReflection,
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
} from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionAlpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { type InMemoryCoordinator, startInMemoryCoordinator } from "../harness/in-memory-coordinator.js";
import { registerHealthService } from "./health.js";
import { registerReflectionService } from "./reflection.js";

const opened: InMemoryCoordinator[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((h) => h.close()));
});

/** The real coordinator in memory. */
async function openCoordinator(): Promise<Coordinator> {
  const h = await startInMemoryCoordinator();
  opened.push(h);
  return h.coordinator;
}

/** A router with the health and reflection services of `coordinator` (a new one by default). */
async function transport(coordinator?: Coordinator) {
  const c = coordinator ?? (await openCoordinator());
  return createRouterTransport((r) => {
    r.service(JobService, {});
    registerHealthService(r, c);
    registerReflectionService(r);
  });
}

/** Sends the questions on one reflection stream and collects the answers. */
async function ask(questions: ServerReflectionRequest["messageRequest"][]): Promise<ServerReflectionResponse[]> {
  const client = createClient(ServerReflection, await transport());
  async function* requests() {
    for (const messageRequest of questions) yield create(ServerReflectionRequestSchema, { host: "h", messageRequest });
  }
  const out: ServerReflectionResponse[] = [];
  for await (const res of client.serverReflectionInfo(requests())) out.push(res);
  return out;
}

/** Names of the files in a file_descriptor_response. */
function fileNames(res: ServerReflectionResponse | undefined): string[] {
  if (res?.messageResponse.case !== "fileDescriptorResponse") throw new Error(`not a file answer: ${res?.messageResponse.case}`);
  return res.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name);
}

describe("server reflection", () => {
  it("lists every registered service, itself included", async () => {
    const [res] = await ask([{ case: "listServices", value: "" }]);
    expect(res?.validHost).toBe("h");
    expect(res?.originalRequest?.messageRequest.case).toBe("listServices");
    if (res?.messageResponse.case !== "listServicesResponse") throw new Error("expected a service list");
    expect(res.messageResponse.value.service.map((s) => s.name)).toEqual([
      "dce.v1.JobService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]);
  });

  it("finds files by symbol (service, method, message, enum value) and by name, with imports once per stream", async () => {
    const answers = await ask([
      { case: "fileContainingSymbol", value: "dce.v1.JobService" },
      { case: "fileContainingSymbol", value: "dce.v1.JobService.GetJob" },
      { case: "fileContainingSymbol", value: "dce.v1.GetJobRequest" },
      { case: "fileContainingSymbol", value: "dce.v1.GetJobRequest.job_id" },
      { case: "fileByFilename", value: "dce/v1/common.proto" },
      { case: "fileContainingSymbol", value: "grpc.health.v1.HealthCheckResponse.ServingStatus" },
    ]);
    expect(fileNames(answers[0])).toEqual(["dce/v1/job.proto", "dce/v1/common.proto"]);
    // Imports already sent on this stream are not sent again; the file asked for always is.
    expect(fileNames(answers[1])).toEqual(["dce/v1/job.proto"]);
    expect(fileNames(answers[2])).toEqual(["dce/v1/job.proto"]);
    expect(fileNames(answers[3])).toEqual(["dce/v1/job.proto"]);
    expect(fileNames(answers[4])).toEqual(["dce/v1/common.proto"]);
    expect(fileNames(answers[5])).toEqual(["grpc/health/v1/health.proto"]);
    // The descriptor is complete enough for a client to build the schema from it.
    const first = answers[0]?.messageResponse;
    if (first?.case !== "fileDescriptorResponse") throw new Error("expected files");
    const job = fromBinary(FileDescriptorProtoSchema, first.value.fileDescriptorProto[0] ?? new Uint8Array());
    expect(job.package).toBe("dce.v1");
    expect(job.dependency).toEqual(["dce/v1/common.proto"]);
    expect(job.service.find((s) => s.name === "JobService")?.method.map((m) => m.name)).toContain("GetJob");
  });

  it("answers unknown names with NOT_FOUND and keeps the stream open", async () => {
    const answers = await ask([
      { case: "fileContainingSymbol", value: "nope.Nothing" },
      { case: "fileByFilename", value: "nope.proto" },
      {
        case: "fileContainingExtension",
        value: create(ExtensionRequestSchema, { containingType: "dce.v1.GetJobRequest", extensionNumber: 99 }),
      },
      { case: "allExtensionNumbersOfType", value: "dce.v1.GetJobRequest" },
      { case: undefined },
      { case: "listServices", value: "" },
    ]);
    for (const a of answers.slice(0, 3)) {
      expect(a.messageResponse.case).toBe("errorResponse");
      expect((a.messageResponse.value as { errorCode: number }).errorCode).toBe(Code.NotFound);
    }
    expect(answers[3]?.messageResponse).toMatchObject({
      case: "allExtensionNumbersResponse",
      value: { baseTypeName: "dce.v1.GetJobRequest", extensionNumber: [] },
    });
    expect(answers[4]?.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: Code.InvalidArgument } });
    expect(answers[5]?.messageResponse.case).toBe("listServicesResponse");
  });

  it("answers the same on v1alpha", async () => {
    const client = createClient(ServerReflectionAlpha, await transport());
    async function* one() {
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: "dce.v1.JobService" } };
    }
    const out = [];
    for await (const res of client.serverReflectionInfo(one())) out.push(res);
    expect(out[0]?.messageResponse.case).toBe("fileDescriptorResponse");
  });
});

describe("health service", () => {
  it("serves until the coordinator drains, knows registered services only", async () => {
    const coordinator = await openCoordinator();
    const health = createClient(Health, await transport(coordinator));
    expect((await health.check({ service: "" })).status).toBe(Status.SERVING);
    expect((await health.check({ service: "dce.v1.JobService" })).status).toBe(Status.SERVING);
    await expect(health.check({ service: "dce.v1.Nope" })).rejects.toMatchObject({ code: Code.NotFound });
    const list = await health.list({});
    expect(Object.keys(list.statuses).sort()).toEqual([
      "",
      "dce.v1.JobService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]);
    coordinator.drain();
    expect((await health.check({ service: "" })).status).toBe(Status.NOT_SERVING);
  });

  it("watch sends the status, then the change to NOT_SERVING when a drain starts", async () => {
    const coordinator = await openCoordinator();
    const health = createClient(Health, await transport(coordinator));
    const abort = new AbortController();
    const seen: Status[] = [];
    const stream = health.watch({ service: "" }, { signal: abort.signal });
    for await (const res of stream) {
      seen.push(res.status);
      if (seen.length === 1) coordinator.drain();
      else break;
    }
    abort.abort();
    expect(seen).toEqual([Status.SERVING, Status.NOT_SERVING]);
  });

  it("watch of an unknown service reads SERVICE_UNKNOWN", async () => {
    const health = createClient(Health, await transport());
    for await (const res of health.watch({ service: "x.Y" })) {
      expect(res.status).toBe(Status.SERVICE_UNKNOWN);
      break;
    }
  });
});
