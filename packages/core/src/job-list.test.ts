import { describe, expect, it } from "vitest";
import { asJobId, type JobId } from "./ids.js";
import { type JobCursor, listJobs } from "./job-list.js";
import { C1, C2, Driver, matmulInput, unwrap } from "./testing/model.js";

const ONE = matmulInput(1, 1, 1);

/** Every job `owner` (or everybody) can see, paged with `limit`, following each page's cursor. */
function pageThrough(d: Driver, limit: number, owner = C1): JobId[][] {
  const pages: JobId[][] = [];
  let after: JobCursor | undefined;
  for (;;) {
    const page = listJobs(d.state, { owner, states: [], limit, ...(after ? { after } : {}) });
    pages.push(page.jobs.map((j) => j.id));
    if (!page.next) return pages;
    after = page.next;
  }
}

describe("listing jobs", () => {
  it("lists newest first, by created time then job id, in pages that end at the last page", () => {
    const d = new Driver({ maxActiveJobs: 100, maxActiveJobsPerClient: 100 });
    for (const id of ["a", "c", "b"]) d.submitOk(ONE, { jobId: asJobId(id) }); // same time: id order decides
    d.advance(5);
    d.submitOk(ONE, { jobId: asJobId("d") });
    expect(pageThrough(d, 2)).toEqual([
      ["d", "c"],
      ["b", "a"],
    ]);
    expect(pageThrough(d, 4)).toEqual([["d", "c", "b", "a"]]);
    expect(pageThrough(d, 3)).toEqual([["d", "c", "b"], ["a"]]);
  });

  it("a client sees only its own jobs; without an owner every client's are listed", () => {
    const d = new Driver();
    const mine = d.submitOk(ONE, { clientId: C1 });
    d.advance(1);
    const theirs = d.submitOk(ONE, { clientId: C2 });
    expect(pageThrough(d, 10, C1)).toEqual([[mine]]);
    expect(pageThrough(d, 10, C2)).toEqual([[theirs]]);
    expect(listJobs(d.state, { states: [], limit: 10 }).jobs.map((j) => j.id)).toEqual([theirs, mine]);
  });

  it("filters by state", () => {
    const d = new Driver();
    const a = d.submitOk(ONE);
    d.advance(1);
    const b = d.submitOk(ONE);
    unwrap(d.cancel(a).outcome);
    expect(listJobs(d.state, { owner: C1, states: ["cancelled"], limit: 10 }).jobs.map((j) => j.id)).toEqual([a]);
    expect(listJobs(d.state, { owner: C1, states: ["queued", "running"], limit: 10 }).jobs.map((j) => j.id)).toEqual([b]);
  });

  it("a cursor stays valid when jobs are created and deleted between pages: nothing is skipped or repeated", () => {
    const d = new Driver({ maxActiveJobs: 100, maxActiveJobsPerClient: 100 });
    const old: JobId[] = [];
    for (let i = 0; i < 6; i++) {
      old.push(d.submitOk(ONE));
      d.advance(1);
    }
    const first = listJobs(d.state, { owner: C1, states: [], limit: 2 });
    expect(first.jobs.map((j) => j.id)).toEqual([old[5], old[4]]);
    // A newer job and the deletion of the cursor's own job do not move the next page.
    d.submitOk(ONE);
    unwrap(d.apply({ type: "job-delete-requested", nowMs: d.nowMs, clientId: C1, jobId: old[4] as JobId }).outcome);
    const next = first.next;
    if (!next) throw new Error("expected a next page");
    const second = listJobs(d.state, { owner: C1, states: [], limit: 10, after: next });
    expect(second.jobs.map((j) => j.id)).toEqual([old[3], old[2], old[1], old[0]]);
    expect(second.next).toBeUndefined();
  });
});
