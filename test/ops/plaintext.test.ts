import { mkdtempSync, rmSync } from "node:fs";
import * as http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { type RunningCoordinator, startCoordinator } from "@dce/coordinator";
import { JobService } from "@dce/proto";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Health } from "../../packages/coordinator/src/gen/grpc/health/v1/health_pb.js";

// Two coordinators in this process, plaintext on loopback (--insecure): each has its own
// metrics registry, and the one port tells HTTP/2 (gRPC, prior knowledge) from HTTP/1.1
// (curl, Prometheus) by the connection preface.

const dirs: string[] = [];
let one: RunningCoordinator;
let two: RunningCoordinator;

async function start(): Promise<RunningCoordinator> {
  const dataDir = mkdtempSync(join(tmpdir(), "dce-ops-"));
  dirs.push(dataDir);
  return startCoordinator({ insecure: true, port: 0, dataDir, logger: pino({ level: "silent" }) });
}

beforeAll(async () => {
  [one, two] = await Promise.all([start(), start()]);
});
afterAll(async () => {
  await Promise.all([one?.close(), two?.close()]);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function get(url: string): Promise<{ status: number; body: string; httpVersion: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, httpVersion: res.httpVersion }));
      })
      .on("error", reject);
  });
}

describe("plaintext coordinator", () => {
  test("serves HTTP/1.1 and gRPC over HTTP/2 on one port", async () => {
    expect(await get(`${one.url}/healthz`)).toEqual({ status: 200, body: "ok\n", httpVersion: "1.1" });
    const health = createClient(Health, createGrpcTransport({ baseUrl: one.url }));
    expect((await health.check({})).status).toBe(1); // SERVING
    // The Connect protocol over HTTP/1.1 reaches the same services.
    const jobs = createClient(JobService, createConnectTransport({ baseUrl: one.url, httpVersion: "1.1" }));
    await expect(jobs.getJob({ jobId: "nope" })).rejects.toMatchObject({ code: 5 });
  });

  test("each coordinator counts into its own registry", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: two.url }));
    await health.check({});
    await health.check({});
    const label = 'dce_rpc_handled_total{service="grpc.health.v1.Health",method="Check",code="ok"}';
    const mine = (await get(`${two.url}/metrics`)).body;
    expect(mine).toContain(`${label} 2`);
    expect(await two.metrics.scrape()).toContain(`${label} 2`);
    expect(one.metrics.registry).not.toBe(two.metrics.registry);
    expect((await get(`${one.url}/metrics`)).body).toContain(`${label} 1`);
  });

  test("once draining, /healthz answers 503 and Health/Check NOT_SERVING", async () => {
    two.coordinator.drain();
    expect(await get(`${two.url}/healthz`)).toMatchObject({ status: 503, body: "draining\n" });
    const health = createClient(Health, createGrpcTransport({ baseUrl: two.url }));
    expect((await health.check({})).status).toBe(2); // NOT_SERVING
    expect((await get(`${two.url}/metrics`)).body).toMatch(/^dce_coordinator_draining 1$/m);
  });
});
