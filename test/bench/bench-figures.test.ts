// The arithmetic behind `pnpm bench`'s bytes and trace columns, on fixed inputs: what
// ss and /proc report, and what the job's status and logs say.
import { describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs module of the benchmark, without type declarations
import { bytesMoved, parseSs } from "../../bench/bytes.mjs";
// @ts-expect-error: as above
import { jobPhases } from "../../bench/trace.mjs";

const SS = `ESTAB 0 0 127.0.0.1:40000 127.0.0.1:9000 users:(("node",pid=11,fd=20))
\t cubic wscale:7,7 rto:204 bytes_sent:1000 bytes_acked:1001 bytes_received:5000 segs_out:6
ESTAB 0 0 127.0.0.1:9000 127.0.0.1:40000 users:(("node",pid=22,fd=30))
\t cubic wscale:7,7 rto:204 bytes_sent:5000 bytes_received:1000 segs_out:6
ESTAB 0 0 127.0.0.1:41000 127.0.0.1:8000 users:(("python3",pid=99,fd=3))
\t cubic bytes_sent:7 bytes_received:7
`;

describe("bench bytes", () => {
  it("reads each socket's counters for the PIDs asked for, and no other process's", () => {
    const m = parseSs(SS, new Set([11, 22]));
    expect([...m.values()]).toEqual([
      { pid: 11, sent: 1000, received: 5000 },
      { pid: 22, sent: 5000, received: 1000 },
    ]);
  });

  it("counts per role the TCP bytes between two samples (new sockets from zero) and takes them off the read/write calls", () => {
    const roles = { client: 11, coordinator: 22 };
    const before = {
      roles,
      tcp: parseSs(SS, new Set([11, 22])),
      io: new Map([
        [11, { rchar: 0, wchar: 0 }],
        [22, { rchar: 0, wchar: 0 }],
      ]),
    };
    const later = `${SS.replace("bytes_sent:1000 bytes_acked:1001 bytes_received:5000", "bytes_sent:3000 bytes_received:9000")}ESTAB 0 0 127.0.0.1:40001 127.0.0.1:9000 users:(("node",pid=11,fd=21))
\t cubic bytes_sent:500 bytes_received:0
`;
    const after = {
      roles,
      tcp: parseSs(later, new Set([11, 22])),
      io: new Map([
        [11, { rchar: 4000 + 10_000, wchar: 2500 + 300 }],
        [22, { rchar: 0, wchar: 0 }],
      ]),
    };
    const moved = bytesMoved(before, after);
    expect(moved.client).toEqual({ netSent: 2500, netReceived: 4000, fileRead: 10_000, fileWritten: 300 });
    expect(moved.coordinator).toEqual({ netSent: 0, netReceived: 0, fileRead: 0, fileWritten: 0 });
  });
});

describe("bench trace", () => {
  it("splits a job's wall time into phases that add up to it, placing verification by the last report's sinceArrivalMs", () => {
    const jobId = "j-1";
    const p = jobPhases({
      jobId,
      t0Ms: 1_000,
      resultMs: 1_500,
      status: { createdAtMs: 1_100, startedAtMs: 1_110, finishedAtMs: 1_450 },
      coordinatorLines: [
        { msg: "shard accepted", jobId, time: 1_300, sinceArrivalMs: 5 },
        { msg: "shard accepted", jobId, time: 1_420, sinceArrivalMs: 30 },
        { msg: "shard accepted", jobId: "other", time: 1_440, sinceArrivalMs: 1 },
      ],
      workerLines: [
        { msg: "shard completed", jobId, computeMs: 80 },
        { msg: "shard completed", jobId, computeMs: 90 },
      ],
      verifySeconds: 0.05,
    });
    expect(p).toMatchObject({
      uploadMs: 100,
      grantWaitMs: 10,
      computeMs: 280,
      verificationMs: 30,
      assemblyMs: 30,
      downloadMs: 50,
      kernelMs: 170,
      verifyThreadMs: 50,
      shardsSeen: 2,
    });
    expect(p.uploadMs + p.grantWaitMs + p.computeMs + p.verificationMs + p.assemblyMs + p.downloadMs).toBe(500);
  });
});
