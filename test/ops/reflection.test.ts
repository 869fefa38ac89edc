import { fromBinary } from "@bufbuild/protobuf";
import { ErrorInfoSchema, ErrorReason } from "@dce/proto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type Cluster, startCluster } from "../support/cluster.js";
import { bufCurl, getHttp1, getHttp2 } from "../support/ops.js";

// A real TLS coordinator process, probed by tools that share no code with it: `buf curl`
// (Go) discovers the schema through server reflection and calls methods with it.

let cluster: Cluster;
beforeAll(async () => {
  cluster = await startCluster({ workers: 0 });
});
afterAll(async () => {
  await cluster?.close();
});

const tls = () => ["--cacert", cluster.caPath, "--protocol", "grpc"];

describe("gRPC reflection and health, through buf curl", () => {
  test("lists the services and methods by reflection", async () => {
    const services = await bufCurl([...tls(), "--list-services", cluster.url]);
    expect(services.stderr).toBe("");
    expect(services.code).toBe(0);
    expect(services.stdout.trim().split("\n")).toEqual([
      "dce.v1.BlobService",
      "dce.v1.JobService",
      "dce.v1.WorkerService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]);
    const methods = await bufCurl([...tls(), "--list-methods", cluster.url]);
    expect(methods.code).toBe(0);
    expect(methods.stdout).toContain("dce.v1.JobService/GetJob\n");
    expect(methods.stdout).toContain("dce.v1.WorkerService/AcquireShards\n");
    // Older clients ask under the v1alpha name.
    const alpha = await bufCurl([...tls(), "--reflect-protocol", "grpc-v1alpha", "--list-services", cluster.url]);
    expect(alpha.code).toBe(0);
    expect(alpha.stdout).toContain("dce.v1.JobService");
  });

  test("Health/Check answers SERVING; an unknown service is NOT_FOUND", async () => {
    const ok = await bufCurl([...tls(), "-d", "{}", `${cluster.url}/grpc.health.v1.Health/Check`]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ status: "SERVING" });
    const named = await bufCurl([
      ...tls(),
      "-d",
      '{"service":"dce.v1.JobService"}',
      `${cluster.url}/grpc.health.v1.Health/Check`,
    ]);
    expect(JSON.parse(named.stdout)).toEqual({ status: "SERVING" });
    const unknown = await bufCurl([...tls(), "-d", '{"service":"no.Such"}', `${cluster.url}/grpc.health.v1.Health/Check`]);
    expect(unknown.code).toBe(5 << 3); // buf curl exits with the gRPC code shifted left by 3
    expect(JSON.parse(unknown.stderr)).toMatchObject({ code: "not_found" });
  });

  test("dce.v1.JobService/GetJob with an unknown id is NOT_FOUND, its schema taken from reflection", async () => {
    const r = await bufCurl([
      ...tls(),
      "-H",
      `Authorization: Bearer ${cluster.token}`,
      "-d",
      '{"jobId":"no-such-job"}',
      `${cluster.url}/dce.v1.JobService/GetJob`,
    ]);
    expect(r.code).toBe(5 << 3);
    const body = JSON.parse(r.stderr) as { code: string; message: string; details: { type: string; value: string }[] };
    expect(body).toMatchObject({ code: "not_found", message: "job no-such-job not found" });
    // The typed detail every error carries (docs/errors.md): clients branch on its reason.
    expect(body.details.map((d) => d.type)).toEqual(["dce.v1.ErrorInfo"]);
    const info = fromBinary(ErrorInfoSchema, Buffer.from(body.details[0]?.value ?? "", "base64"));
    expect(info.reason).toBe(ErrorReason.JOB_NOT_FOUND);
    expect(info.metadata).toEqual({ job_id: "no-such-job" });
  });

  test("the Connect protocol works too, for the health list", async () => {
    const r = await bufCurl(["--cacert", cluster.caPath, "-d", "{}", `${cluster.url}/grpc.health.v1.Health/List`]);
    expect(r.code).toBe(0);
    const statuses = (JSON.parse(r.stdout) as { statuses: Record<string, { status: string }> }).statuses;
    expect(statuses[""]).toEqual({ status: "SERVING" });
    expect(statuses["dce.v1.WorkerService"]).toEqual({ status: "SERVING" });
  });
});

describe("plain HTTP on the gRPC port", () => {
  test("GET /healthz answers ok over HTTP/1.1 and HTTP/2", async () => {
    const h1 = await getHttp1(`${cluster.url}/healthz`, cluster.ca);
    expect(h1).toMatchObject({ status: 200, body: "ok\n", httpVersion: "1.1" });
    const h2 = await getHttp2(`${cluster.url}/healthz`, cluster.ca);
    expect(h2).toMatchObject({ status: 200, body: "ok\n" });
  });

  test("unknown paths are 404, and gRPC still works next to them", async () => {
    expect((await getHttp1(`${cluster.url}/nope`, cluster.ca)).status).toBe(404);
    const ok = await bufCurl([...tls(), "-d", "{}", `${cluster.url}/grpc.health.v1.Health/Check`]);
    expect(ok.code).toBe(0);
  });
});
