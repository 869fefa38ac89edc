import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { ErrorInfoSchema, JobService } from "@dce/proto";
import { describe, expect, it } from "vitest";
import { createClient, ErrorReason, errorMetadata, errorReason } from "./index.js";

/** A coordinator whose GetJob answers NOT_FOUND with the JOB_NOT_FOUND reason, and CancelJob NOT_FOUND without one. */
function client() {
  const transport = createRouterTransport((r) =>
    r.service(JobService, {
      getJob(req) {
        const info = create(ErrorInfoSchema, { reason: ErrorReason.JOB_NOT_FOUND, metadata: { job_id: req.jobId } });
        throw new ConnectError(`job ${req.jobId} not found`, Code.NotFound, undefined, [{ desc: ErrorInfoSchema, value: info }]);
      },
      cancelJob() {
        throw new ConnectError("not found", Code.NotFound);
      },
    }),
  );
  return createClient({ baseUrl: "http://fake.invalid", transport });
}

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("the call succeeded");
}

describe("errorReason", () => {
  it("reads the reason and metadata of an RPC failure, whatever its message says", async () => {
    const e = await errorOf(client().getJobHandle("j-1").status());
    expect(e).toBeInstanceOf(ConnectError);
    expect(errorReason(e)).toBe(ErrorReason.JOB_NOT_FOUND);
    expect(errorMetadata(e)).toEqual({ job_id: "j-1" });
  });

  it("is undefined for an error without one (branch on the code then)", async () => {
    const e = await errorOf(client().getJobHandle("j-1").cancel());
    expect(ConnectError.from(e).code).toBe(Code.NotFound);
    expect(errorReason(e)).toBeUndefined();
    expect(errorMetadata(e)).toEqual({});
    expect(errorReason(new Error("job j-1 not found"))).toBeUndefined();
  });
});
