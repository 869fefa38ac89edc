import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema, ErrorReason } from "@dce/proto";
import { describe, expect, it } from "vitest";
import { errorInfoOf, errorMetadataOf, errorReasonOf } from "./error-info.js";

const info = create(ErrorInfoSchema, { reason: ErrorReason.WORKER_NOT_FOUND, metadata: { worker_id: "w-1" } });

describe("errorReasonOf / errorMetadataOf", () => {
  it("read the ErrorInfo of a ConnectError, as raised and as received in binary form", () => {
    const raised = new ConnectError("worker w-1 is not registered", Code.NotFound, undefined, [
      { desc: ErrorInfoSchema, value: info },
    ]);
    // What a client holds: the detail as type name and bytes, decoded on demand.
    const received = new ConnectError("worker w-1 is not registered", Code.NotFound);
    received.details.push({
      type: "dce.v1.ErrorInfo",
      value: toBinary(ErrorInfoSchema, info),
    });
    for (const e of [raised, received]) {
      expect(errorReasonOf(e)).toBe(ErrorReason.WORKER_NOT_FOUND);
      expect(errorMetadataOf(e)).toEqual({ worker_id: "w-1" });
    }
  });

  it("are undefined and empty for anything without an ErrorInfo", () => {
    for (const e of [new ConnectError("deadline", Code.DeadlineExceeded), new Error("boom"), "text", undefined, null]) {
      expect(errorReasonOf(e)).toBeUndefined();
      expect(errorInfoOf(e)).toBeUndefined();
      expect(errorMetadataOf(e)).toEqual({});
    }
  });
});
