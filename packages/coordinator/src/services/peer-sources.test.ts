import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema, ErrorReason } from "@dce/proto";
import { afterEach, describe, expect, it } from "vitest";
import { type InMemoryCoordinator, startInMemoryCoordinator } from "../harness/in-memory-coordinator.js";

// RegisterWorker's peer_address and the peers a grant names (MatMulTask.a_peers/b_peers):
// the coordinator checks the address, hands it to the core, and fills each task's peers
// from the core's grant (core/src/panel-holders.ts decides who).

let cluster: InMemoryCoordinator | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

async function register(c: InMemoryCoordinator, name: string, peerAddress: string) {
  const { workerId } = await c.workers.registerWorker({
    name,
    kernels: [{ name: "reference", fingerprint: "test/1" }],
    threads: 1,
    peerAddress,
  });
  return workerId;
}

/** The error RegisterWorker answers for `peerAddress`, or undefined if it registers. */
async function refusal(c: InMemoryCoordinator, peerAddress: string) {
  try {
    await register(c, "w", peerAddress);
    return undefined;
  } catch (e) {
    const err = ConnectError.from(e);
    return { code: err.code, reason: err.findDetails(ErrorInfoSchema)[0]?.reason, message: err.rawMessage };
  }
}

describe("peer_address at registration", () => {
  it("accepts none, host:port and [IPv6]:port", async () => {
    cluster = await startInMemoryCoordinator();
    for (const ok of ["", "10.0.0.7:7100", "worker-3.dce.internal:65535", "[fd00::7]:1", `${"h".repeat(250)}:7100`]) {
      expect(await refusal(cluster, ok)).toBeUndefined();
    }
  });

  it("refuses anything else with INVALID_ARGUMENT and a message naming what is wrong", async () => {
    cluster = await startInMemoryCoordinator();
    const cases: [string, string][] = [
      ["10.0.0.7", "has no port"],
      ["10.0.0.7:0", "has no port in 1..65535"],
      ["10.0.0.7:65536", "has no port in 1..65535"],
      ["10.0.0.7:http", "has no port in 1..65535"],
      [":7100", "has no valid host"],
      ["fd00::7:7100", "has no valid host"],
      ["a b:7100", "has no valid host"],
      [`${"h".repeat(251)}:7100`, "is longer than 255 characters"], // 256 characters; 255 is accepted (above)
    ];
    for (const [address, why] of cases) {
      const r = await refusal(cluster, address);
      expect(r?.code, address).toBe(Code.InvalidArgument);
      expect(r?.reason).toBe(ErrorReason.MALFORMED_REQUEST);
      expect(r?.message).toContain(why);
      expect(r?.message).toContain("peer_address");
    }
  });
});

describe("peers named in a grant", () => {
  it("a task names the other workers granted its tile row (a_peers) and tile column (b_peers), with their addresses", async () => {
    cluster = await startInMemoryCoordinator();
    const ones = (n: number) => new Float64Array(n).fill(1);
    const a = cluster.putMatrix(4, 2, ones(8));
    const b = cluster.putMatrix(2, 4, ones(8));
    await cluster.submit(a, b, 1, 1); // 4×4 tiles
    const w = [
      await register(cluster, "w0", "10.0.0.1:7100"),
      await register(cluster, "w1", "10.0.0.2:7100"),
      await register(cluster, "w2", "10.0.0.3:7100"),
      await register(cluster, "w3", ""),
    ];
    const c = cluster;
    const grant = async (i: number) => {
      const { leases } = await c.workers.acquireShards({ workerId: w[i] as string, maxShards: 1, waitMs: 0 });
      const task = leases[0]?.matmul;
      if (!task) throw new Error("no task");
      const peers = (list: typeof task.aPeers) => list.map((p) => [p.workerId, p.address, p.identity]);
      return { rows: [task.rowStart, task.colStart], a: peers(task.aPeers), b: peers(task.bPeers) };
    };
    // Four workers: 2×2 blocks of 2×2 tiles. w0 and w1 share tile rows 0-1; w0 and w2 tile columns 0-1.
    expect(await grant(0)).toEqual({ rows: [0, 0], a: [], b: [] });
    expect(await grant(1)).toEqual({ rows: [0, 2], a: [[w[0], "10.0.0.1:7100", "w0"]], b: [] });
    expect(await grant(2)).toEqual({ rows: [2, 0], a: [], b: [[w[0], "10.0.0.1:7100", "w0"]] });
    // w3 serves no peers: it is never named, but it is told of w1 (column 2) and w2 (row 2).
    expect(await grant(3)).toEqual({
      rows: [2, 2],
      a: [[w[2], "10.0.0.3:7100", "w2"]],
      b: [[w[1], "10.0.0.2:7100", "w1"]],
    });
    // w1's next tile (0, 3): row 0 is held by w0 (and w1 itself, never named); nobody else has column 3.
    expect(await grant(1)).toEqual({ rows: [0, 3], a: [[w[0], "10.0.0.1:7100", "w0"]], b: [] });
  });
});
