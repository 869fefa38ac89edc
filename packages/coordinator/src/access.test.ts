import type { DescService } from "@bufbuild/protobuf";
import * as proto from "@dce/proto";
import { describe, expect, it } from "vitest";
import { ACCESS, ANYONE, allowedFor } from "./access.js";
import { Health } from "./gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "./gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionAlpha } from "./gen/grpc/reflection/v1alpha/reflection_pb.js";

const isService = (v: unknown): v is DescService => (v as { kind?: unknown } | null)?.kind === "service";
/** Every service the coordinator serves: all of dce.v1 but PeerService (workers serve it to each other), health and reflection. */
const SERVED: DescService[] = [
  ...(Object.values(proto) as unknown[]).filter(isService).filter((s) => s.typeName !== proto.PeerService.typeName),
  Health,
  ServerReflection,
  ServerReflectionAlpha,
];
const methodKeys = SERVED.flatMap((s) => s.methods.map((m) => `${s.typeName}/${m.name}`));

describe("the access table", () => {
  it("lists every method of every served service (new methods must be added on purpose)", () => {
    expect(SERVED.map((s) => s.typeName)).toEqual(
      expect.arrayContaining(["dce.v1.JobService", "dce.v1.BlobService", "dce.v1.WorkerService"]),
    );
    const missing = methodKeys.filter((k) => allowedFor(k) === undefined);
    expect(missing).toEqual([]);
  });

  it("lists nothing that is not served", () => {
    const stray = Object.keys(ACCESS).filter((k) => !k.startsWith("GET /") && !methodKeys.includes(k));
    expect(stray).toEqual([]);
  });

  it("keeps the worker role on worker calls only, and job data behind a token", () => {
    for (const [key, allowed] of Object.entries(ACCESS)) {
      if (key.startsWith("dce.v1.WorkerService/")) expect(allowed).toEqual(["worker"]);
      if (key.startsWith("dce.v1.JobService/")) expect(allowed).toEqual(["client", "admin"]);
    }
    expect(ACCESS["GET /metrics"]).toEqual(["admin"]);
    expect(ACCESS["GET /ui/api/state"]).toEqual(["admin"]);
    expect(ACCESS["GET /healthz"]).toBe(ANYONE);
  });

  it("answers undefined for unlisted keys, including inherited property names", () => {
    expect(allowedFor("dce.v1.JobService/DeleteEverything")).toBeUndefined();
    expect(allowedFor("constructor")).toBeUndefined();
    expect(allowedFor("__proto__")).toBeUndefined();
  });
});
