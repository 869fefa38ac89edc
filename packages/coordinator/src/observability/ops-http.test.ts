import { afterEach, describe, expect, it } from "vitest";
import { parseArgs } from "../args.js";
import { type InMemoryCoordinator, startInMemoryCoordinator } from "../harness/in-memory-coordinator.js";
import { createDashboard } from "./dashboard.js";
import { createCoordinatorMetrics } from "./metrics.js";
import { createOpsHttpHandler, type OpsHttpOptions, type OpsRequest } from "./ops-http.js";

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Calls the handler with a minimal request/response pair and collects the answer. */
function call(o: OpsHttpOptions, url: string, method = "GET"): Promise<Answer> {
  const handler = createOpsHttpHandler(o);
  return new Promise((resolve) => {
    const answer: Answer = { status: 0, headers: {}, body: "" };
    const res = {
      headersSent: false,
      writeHead(status: number, headers: Record<string, string>) {
        answer.status = status;
        answer.headers = headers;
        this.headersSent = true;
      },
      end(data?: Uint8Array | string) {
        if (data !== undefined) answer.body = Buffer.from(data).toString();
        resolve(answer);
      },
    };
    handler({ url, method, headers: {} } as OpsRequest, res as unknown as Parameters<typeof handler>[1]);
  });
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The endpoints' options over the real coordinator in memory (`h`), as `startCoordinator` wires them. */
async function options(extra: Partial<OpsHttpOptions> = {}): Promise<OpsHttpOptions & { h: InMemoryCoordinator }> {
  const h = await startInMemoryCoordinator();
  cleanups.push(() => h.close());
  const metrics = createCoordinatorMetrics({ processMetrics: false });
  metrics.attach(h.coordinator);
  const dashboard = createDashboard(h.coordinator);
  cleanups.push(() => dashboard.close());
  return { h, metrics, dashboard, isServing: () => !h.coordinator.state.draining, ...extra };
}

/** Submits A (m × k) · B (k × n) of zeros in square tiles; returns the job id. */
async function submit(h: InMemoryCoordinator, m: number, k: number, n: number, tile: number): Promise<string> {
  const a = h.putMatrix(m, k, new Float64Array(m * k));
  const b = h.putMatrix(k, n, new Float64Array(k * n));
  return (await h.submit(a, b, tile, tile)).jobId;
}

describe("plain-HTTP endpoints", () => {
  it("answers /healthz with ok, then 503 once draining", async () => {
    const o = await options();
    expect(await call(o, "/healthz")).toMatchObject({ status: 200, body: "ok\n" });
    o.h.coordinator.drain();
    expect(await call(o, "/healthz")).toMatchObject({ status: 503, body: "draining\n" });
  });

  it("serves /metrics in the Prometheus text format", async () => {
    const o = await options();
    await submit(o.h, 4, 4, 4, 4);
    const a = await call(o, "/metrics");
    expect(a.status).toBe(200);
    expect(a.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(a.body).toMatch(/^dce_jobs\{state="queued"\} 1$/m);
    expect(a.body).toMatch(/^dce_jobs_submitted_total 1$/m);
  });

  it("serves the dashboard page, its files and its JSON model, under a strict CSP", async () => {
    const o = await options();
    const job = await submit(o.h, 4, 4, 4, 2);
    for (const path of ["/ui", "/ui/"]) {
      const page = await call(o, path);
      expect(page.status).toBe(200);
      expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
      expect(page.headers["content-security-policy"]).toContain("script-src 'self'");
      expect(page.body).toContain('<script src="/ui/app.js" defer></script>');
    }
    expect((await call(o, "/ui/app.js")).headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect((await call(o, "/ui/style.css")).headers["content-type"]).toBe("text/css; charset=utf-8");
    const api = await call(o, `/ui/api/state?job=${job}`);
    expect(api.headers["content-type"]).toBe("application/json; charset=utf-8");
    const state = JSON.parse(api.body) as { focusJobId: string; tiles: { cells: string } };
    expect(state.focusJobId).toBe(job);
    expect(state.tiles.cells).toBe("pppp");
    expect((await call(o, "/ui/nope.js")).status).toBe(404);
  });

  it("answers 404 for other paths and for disabled endpoints, 405 for other methods, HEAD without a body", async () => {
    const o = await options();
    expect((await call(o, "/")).status).toBe(404);
    expect((await call(o, "/uix")).status).toBe(404);
    expect((await call(o, "/metrics", "POST")).status).toBe(405);
    expect(await call(o, "/healthz", "HEAD")).toMatchObject({ status: 200, body: "" });
    const bare: OpsHttpOptions = { isServing: () => true };
    expect((await call(bare, "/metrics")).status).toBe(404);
    expect((await call(bare, "/ui")).status).toBe(404);
    expect((await call(bare, "/healthz")).status).toBe(200);
  });

  it("lets the guard refuse an endpoint with 403", async () => {
    const seen: string[] = [];
    const o = await options({
      guard: (endpoint) => {
        seen.push(endpoint);
        return endpoint !== "ui-data";
      },
    });
    expect((await call(o, "/ui/api/state")).status).toBe(403);
    expect((await call(o, "/ui")).status).toBe(200);
    expect((await call(o, "/metrics")).status).toBe(200);
    expect((await call(o, "/healthz")).status).toBe(200);
    expect(seen).toEqual(["ui-data", "ui", "metrics", "healthz"]);
    const challenged = await options({ guard: () => ({ status: 401, message: "needs a token" }) });
    const r = await call(challenged, "/metrics");
    expect(r.status).toBe(401);
    expect(r.headers["www-authenticate"]).toBe('Bearer realm="dce"');
    expect(r.body).toBe("needs a token\n");
    const failing = await options({ guard: () => Promise.reject(new Error("no")) });
    expect((await call(failing, "/ui")).status).toBe(500);
  });
});

describe("coordinator flags", () => {
  it("--no-metrics and --no-ui turn the endpoints off; DCE_METRICS=0 / DCE_UI=0 too", () => {
    const on = parseArgs([], {});
    const off = parseArgs(["--no-metrics", "--no-ui"], {});
    const env = parseArgs([], { DCE_METRICS: "0", DCE_UI: "0" });
    if (!on.ok || !off.ok || !env.ok) throw new Error("parse failed");
    if (on.command.kind !== "serve" || off.command.kind !== "serve" || env.command.kind !== "serve") throw new Error("not serve");
    expect(on.command.options).toMatchObject({ metrics: true, ui: true });
    expect(off.command.options).toMatchObject({ metrics: false, ui: false });
    expect(env.command.options).toMatchObject({ metrics: false, ui: false });
  });
});
