import { connect } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { issuePeerCerts, type PeerCerts } from "../test-support/peer-certs.js";
import { captureLogger, cleanUpWorkers, HeldPool, newWorker, startCoordinator } from "../test-support/worker-fixtures.js";

// The worker's panel server over its lifecycle: started before registration (whose
// peer_address names it), off without a certificate, stopped by close().

let certs: PeerCerts;
beforeAll(async () => {
  certs = await issuePeerCerts();
});
afterAll(async () => {
  await certs?.remove();
});
afterEach(cleanUpWorkers);

const peerAddressesRegistered = (h: Awaited<ReturnType<typeof startCoordinator>>) =>
  h.calls.of("registerWorker").map((c) => (c.request as { peerAddress: string }).peerAddress);

/** Whether something accepts TCP connections at `port` on 127.0.0.1. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

describe("the worker's panel server", () => {
  it("listens before registering, registers its address, and stops with the worker", async () => {
    const h = await startCoordinator();
    const log = captureLogger();
    const worker = newWorker(h, { pool: new HeldPool(1), ...certs.worker1, peerListen: "127.0.0.1:0", logger: log });
    await worker.start();
    const [address] = peerAddressesRegistered(h);
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
    const port = Number(address?.split(":")[1]);
    expect(await accepts(port)).toBe(true);
    expect(log.lines.find((l) => l.msg === "serving input panels to peers")?.fields).toMatchObject({ peerAdvertise: address });
    await worker.close();
    expect(await accepts(port)).toBe(false);
  });

  it("advertises --peer-advertise instead of the listen address", async () => {
    const h = await startCoordinator();
    const worker = newWorker(h, {
      pool: new HeldPool(1),
      ...certs.worker1,
      peerListen: "127.0.0.1:0",
      peerAdvertise: "w1.test:7071",
    });
    await worker.start();
    expect(peerAddressesRegistered(h)).toEqual(["w1.test:7071"]);
  });

  it("serves no peers without a worker certificate, and says so once", async () => {
    const h = await startCoordinator();
    const log = captureLogger();
    const worker = newWorker(h, { pool: new HeldPool(1), peerListen: "127.0.0.1:0", logger: log });
    await worker.start();
    expect(peerAddressesRegistered(h)).toEqual([""]);
    expect(log.lines.filter((l) => l.msg.startsWith("serving no peers"))).toHaveLength(1);
  });

  it("does not start when its address cannot be listened on", async () => {
    const h = await startCoordinator();
    const first = newWorker(h, { pool: new HeldPool(1), ...certs.worker1, peerListen: "127.0.0.1:0" });
    await first.start();
    const taken = peerAddressesRegistered(h)[0] ?? "";
    const second = newWorker(h, { pool: new HeldPool(1), ...certs.worker2, peerListen: taken });
    await expect(second.start()).rejects.toThrow(/starting the panel server for peers: .*EADDRINUSE/);
    expect(peerAddressesRegistered(h)).toHaveLength(1);
  });
});
