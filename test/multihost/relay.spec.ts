import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { ROOT } from "../support/cluster.js";

// relay.mjs, the test bed's delay and jitter without netem, on loopback (no root needed):
// it delays each direction by delayMs ± jitterMs, keeps every byte in order, passes a
// half-close on, and closes a connection whose target cannot be reached.

const RELAY = join(ROOT, "test/multihost/relay.mjs");

let relay: ChildProcess | undefined;
let server: Server | undefined;
const sockets = new Set<Socket>();

afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  if (relay?.pid !== undefined && relay.exitCode === null && relay.signalCode === null) {
    const gone = new Promise((r) => relay?.once("exit", r));
    relay.kill("SIGKILL");
    await gone;
  }
  relay = undefined;
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
});

/** An echo server on loopback; resolves with its port. */
async function echo(): Promise<number> {
  server = createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => server?.listen(0, "127.0.0.1", r));
  return (server.address() as AddressInfo).port;
}

/** Starts the relay from a free port to `target`; resolves with its port once it listens. */
async function startRelay(target: number, delayMs: number, jitterMs: number): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const plan = { listen: `127.0.0.1:${port}`, target: `127.0.0.1:${target}`, delayMs, jitterMs };
  const p = spawn(process.execPath, [RELAY, JSON.stringify(plan)], { stdio: ["ignore", "pipe", "pipe"] });
  relay = p;
  let out = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the relay did not listen: ${out}`)), 10_000);
    p.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("relay listening on")) {
        clearTimeout(timer);
        resolve();
      }
    });
    p.once("exit", (code) => reject(new Error(`the relay exited ${code}: ${out}`)));
  });
  return port;
}

async function dial(port: number): Promise<Socket> {
  const s = connect(port, "127.0.0.1");
  sockets.add(s);
  await new Promise<void>((resolve, reject) => {
    s.once("connect", resolve);
    s.once("error", reject);
  });
  return s;
}

describe("the test bed's delaying relay", () => {
  test("each round trip takes the delay both ways, within the jitter", async () => {
    const port = await startRelay(await echo(), 30, 10);
    const s = await dial(port);
    const rtts: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      const back = new Promise((r) => s.once("data", r));
      s.write(`ping ${i}`);
      await back;
      rtts.push(performance.now() - t0);
    }
    console.log(`relay 30 ± 10 ms each way: round trips ${rtts.map((t) => t.toFixed(0)).join(" ")} ms`);
    // Each way at least 20 ms (timers never fire early); the upper bound is loose for a busy machine.
    for (const t of rtts) expect(t).toBeGreaterThanOrEqual(39);
    for (const t of rtts) expect(t).toBeLessThan(2_000);
    // Jitter: not every round trip took the same time.
    expect(Math.max(...rtts) - Math.min(...rtts)).toBeGreaterThan(2);
  });

  test("8 MiB each way arrive whole and in order, and a half-close passes through", async () => {
    const port = await startRelay(await echo(), 5, 5);
    const s = await dial(port);
    const data = randomBytes(8 * 1024 * 1024);
    const got: Buffer[] = [];
    s.on("data", (d: Buffer) => got.push(d));
    const ended = new Promise((r) => s.once("end", r));
    s.end(data);
    await ended;
    expect(Buffer.concat(got).equals(data)).toBe(true);
  });

  test("a connection whose target is not listening is closed, not left hanging", async () => {
    const port = await echo();
    await new Promise((r) => server?.close(r));
    server = undefined;
    const s = await dial(await startRelay(port, 5, 0));
    await new Promise((r) => s.once("close", r));
  });
});
