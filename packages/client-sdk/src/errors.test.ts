import { describe, expect, it, vi } from "vitest";
import * as errors from "./errors.js";
import type { JobStatusInfo } from "./types.js";

const status: JobStatusInfo = {
  jobId: "job-9",
  state: "failed",
  shardsTotal: 4,
  shardsDone: 1,
  shardsLeased: 0,
  shardsRetried: 3,
  createdAtMs: 1,
  error: "boom",
  kernel: "reference",
  rows: 2,
  cols: 2,
  tileRows: 1,
  tileCols: 1,
  priority: 0,
  version: 5,
};

describe("error classes", () => {
  it("set name, message and fields", () => {
    const e = new errors.JobFailedError(status);
    expect(e.name).toBe("JobFailedError");
    expect(e.message).toBe("job job-9 failed: boom");
    expect(e.jobId).toBe("job-9");
    expect(e.stack).toContain("JobFailedError");
    expect(new errors.NpyFormatError("x").name).toBe("NpyFormatError");
    const d = new errors.DimensionMismatchError({ rows: 3, cols: 4 }, { rows: 5, cols: 2 });
    expect(d.name).toBe("DimensionMismatchError");
    expect(d.a).toEqual({ rows: 3, cols: 4 });
    expect(d.argument).toBe("b");
  });

  it("instanceof follows the class hierarchy and nothing else", () => {
    const failed = new errors.JobFailedError(status);
    expect(failed).toBeInstanceOf(errors.JobFailedError);
    expect(failed).toBeInstanceOf(errors.JobError);
    expect(failed).toBeInstanceOf(errors.DceError);
    expect(failed).toBeInstanceOf(Error);
    expect(failed instanceof errors.JobCancelledError).toBe(false);
    expect(failed instanceof errors.NpyFormatError).toBe(false);
    expect(new Error("x") instanceof errors.DceError).toBe(false);
    expect({ name: "JobFailedError" } instanceof errors.JobFailedError).toBe(false);
    expect(errors.DceError[Symbol.hasInstance](null)).toBe(false);
  });

  it("instanceof works across two loaded copies of the module", async () => {
    vi.resetModules();
    const other = (await import("./errors.js")) as typeof errors;
    expect(other.JobFailedError).not.toBe(errors.JobFailedError);
    const fromOther = new other.JobFailedError(status);
    expect(fromOther instanceof errors.JobFailedError).toBe(true);
    expect(fromOther instanceof errors.JobError).toBe(true);
    expect(fromOther instanceof errors.DceError).toBe(true);
    expect(fromOther instanceof errors.JobCancelledError).toBe(false);
    expect(new errors.NpyFormatError("x") instanceof other.NpyFormatError).toBe(true);
    expect(new errors.NpyFormatError("x") instanceof other.InvalidMatrixError).toBe(false);
  });

  it("subclasses defined by users fall back to prototype checks", () => {
    class MyError extends errors.DceError {}
    expect(new MyError("x") instanceof MyError).toBe(true);
    expect(new errors.DceError("x") instanceof MyError).toBe(false);
    expect(new MyError("x") instanceof errors.DceError).toBe(true);
  });
});
