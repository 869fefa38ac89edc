// The client host of the multi-host test bed: a real SDK user in its own namespace.
// argv[2] is a JSON plan: { baseUrl, caPath, token, out, jobs: [{ key, m, k, n, seed, tileSize, kernel? }],
// timeoutMs?, reconnectBudgetMs?, attempts? }. It submits every job with its idempotency key and
// waits for its result; a submit or result() failing with UNAVAILABLE or DEADLINE_EXCEEDED is
// retried with the same key (at most `attempts` times). It prints one JSON line per event
// ({"ev":"uploading"|"submitted"|"waiting"|"retry"|"done"|"all-done"|"fatal", ...}) and writes
// each C to OUT/KEY.bin. Ends by itself: every wait is bounded by the RPC timeouts and attempts.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@dce/client-sdk";
import { randomMatrix } from "@dce/core/testing";

const plan = JSON.parse(process.argv[2]);
const ca = readFileSync(plan.caPath, "utf8");
const say = (ev, fields = {}) => process.stdout.write(`${JSON.stringify({ ev, t: Date.now(), ...fields })}\n`);
const client = createClient({
  baseUrl: plan.baseUrl,
  ca,
  token: plan.token,
  useLocalStore: false,
  timeoutMs: plan.timeoutMs ?? 30_000,
  reconnectBudgetMs: plan.reconnectBudgetMs ?? 60_000,
});
const RETRYABLE = new Set([Code.Unavailable, Code.DeadlineExceeded]);
const attempts = plan.attempts ?? 4;

async function withRetries(what, key, fn) {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (e) {
      const ce = ConnectError.from(e);
      if (!RETRYABLE.has(ce.code) || i >= attempts) throw e;
      say("retry", { what, key, attempt: i, code: Code[ce.code], message: ce.rawMessage });
    }
  }
}

async function runJob(j) {
  const a = randomMatrix(j.m, j.k, j.seed);
  const b = randomMatrix(j.k, j.n, j.seed + 1);
  const ids = [];
  for (let i = 1; ; i++) {
    say("uploading", { key: j.key, attempt: i });
    const handle = await withRetries("submit", j.key, () =>
      client.submitMatMul(a, b, { idempotencyKey: j.key, tileSize: j.tileSize, kernel: j.kernel ?? "reference" }),
    );
    ids.push(handle.id);
    say("submitted", { key: j.key, jobId: handle.id });
    try {
      say("waiting", { key: j.key, jobId: handle.id });
      const c = await handle.result();
      writeFileSync(join(plan.out, `${j.key}.bin`), Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength));
      say("done", { key: j.key, jobId: handle.id, ids });
      return;
    } catch (e) {
      const ce = ConnectError.from(e);
      // A failed wait is retried the way a user would: submit again with the same key, which
      // must answer the same job.
      if (!RETRYABLE.has(ce.code) || i >= attempts) throw e;
      say("retry", { what: "result", key: j.key, attempt: i, code: Code[ce.code], message: ce.rawMessage });
    }
  }
}

try {
  await Promise.all(plan.jobs.map(runJob));
  say("all-done");
} catch (e) {
  const ce = ConnectError.from(e);
  say("fatal", { code: Code[ce.code], message: ce.rawMessage });
  process.exitCode = 1;
}
// Open HTTP/2 sessions would keep the process alive.
process.exit();
