import { describe, expect, it } from "vitest";
import { type CoreError, describeError, err, ok } from "./errors.js";
import { asJobId, asWorkerId } from "./ids.js";

const j = asJobId("j1");

describe("describeError", () => {
  it.each<[CoreError, string]>([
    [{ kind: "invalid-spec", message: "matrix A is missing" }, "matrix A is missing"],
    [{ kind: "job-not-found", jobId: "j9" }, "job j9 not found"],
    [{ kind: "worker-not-found", workerId: "w9" }, "worker w9 is not registered (register again)"],
    [{ kind: "job-exists", jobId: j, message: "key reused" }, "key reused"],
    [
      { kind: "stale-fence", jobId: j, shardIndex: 3, epoch: 4, currentEpoch: 7 },
      "stale epoch 4 for job j1 shard 3 (current epoch 7)",
    ],
    [
      { kind: "stale-fence", jobId: j, shardIndex: 3, epoch: 304, currentEpoch: 292 },
      "lease epoch 304 for job j1 shard 3 lost the race: the shard was completed under epoch 292",
    ],
    [{ kind: "lease-lost", jobId: j, shardIndex: 3, epoch: 4 }, "lease epoch 4 for job j1 shard 3 expired or was revoked"],
    [
      { kind: "lease-revoked", jobId: j, shardIndex: 3, epoch: 4, message: "job is cancelled" },
      "lease epoch 4 for job j1 shard 3 revoked: job is cancelled",
    ],
    [{ kind: "already-completed", jobId: j, shardIndex: 3, epoch: 4 }, "job j1 shard 3 epoch 4 was already accepted"],
    [
      { kind: "not-lease-holder", jobId: j, shardIndex: 3, epoch: 4, workerId: asWorkerId("w2") },
      "lease epoch 4 for job j1 shard 3 is held by another worker",
    ],
    [{ kind: "invalid-result", jobId: j, shardIndex: 3, message: "result is 8 bytes" }, "job j1 shard 3: result is 8 bytes"],
    [{ kind: "job-finished", jobId: j, state: "succeeded", message: "already succeeded" }, "already succeeded"],
    [{ kind: "result-not-ready", jobId: j, state: "running" }, "job j1 has no result: it is running"],
    [{ kind: "over-capacity", message: "too many jobs" }, "too many jobs"],
    [{ kind: "over-limit", limit: "maxDim", message: "rows=9, over the limit maxDim=8" }, "rows=9, over the limit maxDim=8"],
    [{ kind: "draining" }, "coordinator is draining: it grants no new work"],
  ])("describes %o", (e, text) => {
    expect(describeError(e)).toBe(text);
  });

  it("cuts a quoted id by code point and escapes its control characters", () => {
    // The 64th UTF-16 unit is the first half of a surrogate pair: slice(0, 64) would split it.
    const id = `${"w".repeat(63)}\u{1f680}\n${"漢".repeat(3000)}`;
    const text = describeError({ kind: "worker-not-found", workerId: id });
    expect(text).toBe(`worker ${"w".repeat(63)}… is not registered (register again)`);
    expect(() => encodeURIComponent(text)).not.toThrow();
    expect(describeError({ kind: "job-not-found", jobId: "a\u001b[2Jb" })).toBe("job a\\u001b[2Jb not found");
  });

  it("never names the other worker in not-lease-holder", () => {
    const text = describeError({ kind: "not-lease-holder", jobId: j, shardIndex: 0, epoch: 1, workerId: asWorkerId("secret-w") });
    expect(text).not.toContain("secret-w");
  });
});

describe("ok / err", () => {
  it("build tagged results", () => {
    expect(ok(3)).toEqual({ ok: true, value: 3 });
    expect(err({ kind: "draining" })).toEqual({ ok: false, error: { kind: "draining" } });
  });
});
