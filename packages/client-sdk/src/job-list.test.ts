import { type InMemoryCoordinator, startInMemoryCoordinator } from "@dce/coordinator/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createClient, type DceClient } from "./client.js";
import { Code, ConnectError } from "./index.js";
import type { JobStatusInfo, Matrix } from "./types.js";

// Listing and deleting jobs through the SDK, against the real coordinator in memory
// (no worker: submitted jobs stay queued unless cancelled).

const open: InMemoryCoordinator[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((h) => h.close()));
});

async function setup(): Promise<{ h: InMemoryCoordinator; client: DceClient }> {
  const h = await startInMemoryCoordinator();
  open.push(h);
  return { h, client: createClient({ baseUrl: "http://coordinator.invalid", transport: h.transport }) };
}

const one: Matrix = { rows: 1, cols: 1, data: Float64Array.of(2) };

async function submitMany(client: DceClient, n: number): Promise<string[]> {
  const ids: string[] = [];
  // One at a time: each gets a later (or equal) created time, and ties go by id.
  for (let i = 0; i < n; i++) ids.push((await client.submitMatMul(one, one)).id);
  return ids;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const rejection = async (p: Promise<unknown>): Promise<ConnectError> => {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("expected a rejection");
};

describe("client.listJobs", () => {
  it("iterates every job newest first, fetching pages lazily as it goes", async () => {
    const { h, client } = await setup();
    const ids = await submitMany(client, 5);
    const list = client.listJobs({ pageSize: 2 });
    expect(h.calls.of("listJobs")).toHaveLength(0); // nothing until iterated
    const it = list[Symbol.asyncIterator]();
    const first = await it.next();
    expect(h.calls.of("listJobs")).toHaveLength(1);
    const rest: JobStatusInfo[] = [];
    for (let r = await it.next(); !r.done; r = await it.next()) rest.push(r.value);
    expect(h.calls.of("listJobs")).toHaveLength(3);
    const seen = [first.value as JobStatusInfo, ...rest].map((j) => j.jobId);
    const byCreation = [...h.coordinator.state.jobs.values()]
      .sort((x, y) => y.createdAtMs - x.createdAtMs || (x.id < y.id ? 1 : -1))
      .map((j) => j.id);
    expect(seen).toEqual(byCreation);
    expect(new Set(seen)).toEqual(new Set(ids));
    expect(rest[0]?.owner).toBe("anonymous");
  });

  it("byPage() gives the pages with their tokens, and a token resumes the listing", async () => {
    const { client } = await setup();
    await submitMany(client, 5);
    const pages = await collect(client.listJobs({ pageSize: 2 }).byPage());
    expect(pages.map((p) => p.jobs.length)).toEqual([2, 2, 1]);
    expect(pages[0]?.pageToken).toBe("");
    expect(pages[1]?.pageToken).toBe(pages[0]?.nextPageToken);
    expect(pages[2]?.nextPageToken).toBe("");
    const resumed = await collect(client.listJobs({ pageSize: 2, pageToken: pages[0]?.nextPageToken ?? "" }));
    expect(resumed.map((j) => j.jobId)).toEqual([...(pages[1]?.jobs ?? []), ...(pages[2]?.jobs ?? [])].map((j) => j.jobId));
  });

  it("filters by state, and refuses a bad state or page size before any RPC", async () => {
    const { h, client } = await setup();
    const [a, b] = await submitMany(client, 2);
    await client.getJobHandle(a as string).cancel();
    expect((await collect(client.listJobs({ states: ["cancelled"] }))).map((j) => j.jobId)).toEqual([a]);
    expect((await collect(client.listJobs({ states: ["queued", "running"] }))).map((j) => j.jobId)).toEqual([b]);
    const calls = h.calls.of("listJobs").length;
    expect(() => client.listJobs({ states: ["done" as never] })).toThrow(RangeError);
    expect(() => client.listJobs({ pageSize: 0.5 })).toThrow(RangeError);
    expect(() => client.listJobs({ pageSize: 1001 })).toThrow(RangeError);
    expect(h.calls.of("listJobs")).toHaveLength(calls);
  });
});

describe("deleting jobs", () => {
  it("job.delete() and client.deleteJob() delete; the job then answers NotFound", async () => {
    const { client } = await setup();
    const [a, b] = await submitMany(client, 2);
    const job = client.getJobHandle(a as string);
    await job.delete();
    expect((await rejection(job.status())).code).toBe(Code.NotFound);
    expect((await rejection(job.delete())).code).toBe(Code.NotFound);
    await client.deleteJob(b as string);
    expect((await rejection(client.getJobHandle(b as string).status())).code).toBe(Code.NotFound);
    expect(await collect(client.listJobs())).toEqual([]);
    expect(() => client.deleteJob("")).toThrow(TypeError);
  });

  it("a wait on a job ends with NotFound when the job is deleted", async () => {
    const { client } = await setup();
    const job = await client.submitMatMul(one, one);
    const waiting = rejection(job.result());
    await new Promise((r) => setTimeout(r, 50));
    await client.deleteJob(job.id);
    expect((await waiting).code).toBe(Code.NotFound);
  });

  it("submit's retentionMs sets when the finished job expires; a negative one is refused locally", async () => {
    const { client } = await setup();
    const job = await client.submitMatMul(one, one, { retentionMs: 60_000 });
    expect((await job.status()).expiresAtMs).toBeUndefined();
    const cancelled = await job.cancel();
    expect(cancelled.expiresAtMs).toBe((cancelled.finishedAtMs ?? 0) + 60_000);
    await expect(client.submitMatMul(one, one, { retentionMs: -1 })).rejects.toThrow(RangeError);
    const tooLong = await rejection(client.submitMatMul(one, one, { retentionMs: 31 * 86_400_000 }));
    expect(tooLong.code).toBe(Code.InvalidArgument);
  });
});
