import { createServer } from "node:net";
import { describe, expect, test } from "vitest";
import { BIN, spawnNode } from "../support/cluster.js";

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("worker without a coordinator", () => {
  test("gives up after its retry budget: exit 1 and one fatal line naming the coordinator and the budget", async () => {
    const url = `https://127.0.0.1:${await closedPort()}`;
    const startedMs = Date.now();
    const w = spawnNode("worker", BIN.worker, ["--coordinator", url, "--retry-budget-ms", "1500", "--threads", "1"]);
    const timeout = setTimeout(() => w.child.kill("SIGKILL"), 60_000);
    const code = await w.exited;
    clearTimeout(timeout);
    expect(code).toBe(1);
    // The budget is spent before it gives up, and the last backoff (≤ 5 s) bounds the overshoot.
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(1_500);
    const lines = w.stderr
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    // It said it was retrying, then gave up once, at fatal level, as its last word.
    expect(lines.some((l) => l.msg === "coordinator call failed; retrying" && l.rpc === "RegisterWorker")).toBe(true);
    const fatal = lines.filter((l) => l.level === 60);
    expect(fatal).toHaveLength(1);
    expect(lines.at(-1)).toBe(fatal[0]);
    expect(fatal[0]).toMatchObject({ coordinator: url, retryBudgetMs: 1500 });
    expect(fatal[0]?.msg).toBe(`giving up: cannot reach the coordinator at ${url} within the retry budget of 1500 ms`);
  });
});
