// `pnpm bench --trace`: where each job's wall time went, from what the processes already
// expose. All clocks are this host's wall clock (Date.now), so they line up:
//   the client's own marks       t0 (submit called), result in hand;
//   the job's status (GetJob)    createdAtMs, startedAtMs (first grant), finishedAtMs (result sealed);
//   the coordinator's debug log  "shard accepted" per shard, with sinceArrivalMs (how long its
//                                report waited for reading and checking before acceptance);
//   the workers' debug log       "shard completed" per shard, with the kernel's computeMs;
//   the coordinator's /metrics   dce_shard_verification_seconds_sum (checking time of the job's
//                                results, on the verifier's threads, overlapped with compute).
import { get } from "node:https";

/** Log messages the trace reads (every other line is dropped as it arrives). */
const WANTED = new Set(["shard accepted", "shard completed"]);

/** Collects the wanted JSON log lines of one process's stderr; `feed` takes each chunk. */
export function logCollector() {
  let partial = "";
  const lines = [];
  return {
    lines,
    feed(chunk) {
      partial += chunk;
      let i = partial.indexOf("\n");
      while (i >= 0) {
        const line = partial.slice(0, i);
        partial = partial.slice(i + 1);
        i = partial.indexOf("\n");
        if (!line.startsWith("{") || ![...WANTED].some((w) => line.includes(w))) continue;
        try {
          const o = JSON.parse(line);
          if (WANTED.has(o.msg)) lines.push(o);
        } catch {}
      }
    },
    clear() {
      lines.length = 0;
    },
  };
}

/** The coordinator's `dce_shard_verification_seconds_sum` (seconds of checking so far), or undefined. */
export function verificationSeconds(url, ca, token) {
  return new Promise((res) => {
    const req = get(`${url}/metrics`, { ca, headers: { authorization: `Bearer ${token}` } }, (r) => {
      let body = "";
      r.setEncoding("utf8");
      r.on("data", (d) => {
        body += d;
      });
      r.on("end", () => {
        const m = /^dce_shard_verification_seconds_sum(?:\{[^}]*\})? ([0-9.e+-]+)$/m.exec(body);
        res(r.statusCode === 200 && m ? Number(m[1]) : undefined);
      });
    });
    req.on("error", () => res(undefined));
    req.setTimeout(5_000, () => req.destroy());
  });
}

/**
 * One job's phases in ms, which add up to its wall time. upload: submit called -> job
 * created (hashing, writing or sending A and B, CreateJob); grant wait: created -> first
 * shard leased; compute: first lease -> the last result's report arrives (fetching panels,
 * kernels, sending tiles, and the checks of earlier tiles, which overlap); verification:
 * that last report's wait for its checks; assembly: last result accepted -> C sealed;
 * download: sealed -> C in the client. kernelMs: the workers' kernel time summed over
 * shards (thread time); verifyThreadMs: all checking time of the job on the verifier's threads.
 */
export function jobPhases({ jobId, t0Ms, resultMs, status, coordinatorLines, workerLines, verifySeconds }) {
  const accepted = coordinatorLines.filter((l) => l.jobId === jobId);
  const completed = workerLines.filter((l) => l.jobId === jobId);
  const last = accepted.reduce((x, l) => (x === undefined || l.time > x.time ? l : x), undefined);
  const lastAccepted = last?.time;
  const lastArrived = last === undefined ? undefined : last.time - (last.sinceArrivalMs ?? 0);
  const created = status.createdAtMs;
  const started = status.startedAtMs;
  const finished = status.finishedAtMs;
  const span = (from, to) => (from === undefined || to === undefined ? undefined : Math.max(0, to - from));
  return {
    uploadMs: span(t0Ms, created),
    grantWaitMs: span(created, started),
    computeMs: span(started, lastArrived),
    verificationMs: span(lastArrived, lastAccepted),
    assemblyMs: span(lastAccepted, finished),
    downloadMs: span(finished, resultMs),
    kernelMs: completed.length > 0 ? completed.reduce((s, l) => s + (l.computeMs ?? 0), 0) : undefined,
    verifyThreadMs: verifySeconds === undefined ? undefined : verifySeconds * 1000,
    shardsSeen: accepted.length,
  };
}

/** One line of the trace table: "upload 12 | grant wait 1 | compute 140 (kernel 180 ...) | verification 3 | ...". */
export function formatPhases(p) {
  const ms = (x) => (x === undefined ? "?" : x.toFixed(0));
  return [
    `upload ${ms(p.uploadMs)}`,
    `grant wait ${ms(p.grantWaitMs)}`,
    `compute ${ms(p.computeMs)} (kernel ${ms(p.kernelMs)}, checks ${ms(p.verifyThreadMs)} thread-ms)`,
    `verification ${ms(p.verificationMs)}`,
    `assembly ${ms(p.assemblyMs)}`,
    `download ${ms(p.downloadMs)}`,
  ].join(" | ");
}
