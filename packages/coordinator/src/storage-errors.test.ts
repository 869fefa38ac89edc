import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema, ErrorReason } from "@dce/proto";
import { describe, expect, it } from "vitest";
import { DataDirError, dataDirError, formatBytes, withDataDir } from "./storage-errors.js";

const sysError = (code: string) => Object.assign(new Error(`${code}: fake, write`), { code });

describe("dataDirError", () => {
  it.each([
    ["ENOSPC", Code.ResourceExhausted, "is full (ENOSPC)", "free space there", ErrorReason.DATA_DIR_FULL],
    ["EDQUOT", Code.ResourceExhausted, "is over its disk quota (EDQUOT)", "free space there", ErrorReason.DATA_DIR_FULL],
    ["EIO", Code.Unavailable, "had an I/O error (EIO)", "check the disk", ErrorReason.DATA_DIR_FAILED],
    ["EROFS", Code.Unavailable, "is read-only (EROFS)", "check the disk", ErrorReason.DATA_DIR_FAILED],
  ])(
    "%s: code %s, a message naming the data dir, what was written, the space left and what to do",
    (errno, code, what, advice, reason) => {
      const e = dataDirError(sysError(errno), "/srv/dce", "writing upload u-1");
      expect(e).toBeInstanceOf(DataDirError);
      expect(e?.code).toBe(code);
      expect(e?.errno).toBe(errno);
      expect(e?.findDetails(ErrorInfoSchema)).toEqual([
        expect.objectContaining({ reason, metadata: { data_dir: "/srv/dce", errno } }),
      ]);
      expect(e?.rawMessage).toMatch(new RegExp(`^data dir /srv/dce ${what.replace(/[()]/g, "\\$&")} while writing upload u-1; `));
      expect(e?.rawMessage).toContain(advice);
      expect(e?.rawMessage).toMatch(/free space unknown|free/);
    },
  );

  it("leaves other errors alone (they are bugs or bad requests, answered as before)", () => {
    expect(dataDirError(sysError("ENOENT"), "/d", "x")).toBeUndefined();
    expect(dataDirError(new Error("boom"), "/d", "x")).toBeUndefined();
    const bug = new Error("boom");
    expect(() =>
      withDataDir("/d", "x", () => {
        throw bug;
      }),
    ).toThrow(bug);
  });

  it("is a ConnectError to every check (so the server passes it on), and only it is a DataDirError", () => {
    const e = dataDirError(sysError("ENOSPC"), "/d", "x");
    expect(e).toBeInstanceOf(ConnectError);
    expect(ConnectError.from(e)).toBe(e);
    expect(new ConnectError("other", Code.ResourceExhausted)).not.toBeInstanceOf(DataDirError);
  });

  it("withDataDir runs the cleanup, then throws the mapped error even if the cleanup fails", () => {
    let cleaned = false;
    const thrown = (() => {
      try {
        withDataDir(
          "/d",
          "writing y",
          () => {
            throw sysError("ENOSPC");
          },
          () => {
            cleaned = true;
            throw new Error("cleanup");
          },
        );
      } catch (e) {
        return e;
      }
    })();
    expect(cleaned).toBe(true);
    expect(thrown).toBeInstanceOf(DataDirError);
  });

  it("formats sizes as people read them", () => {
    expect([formatBytes(512), formatBytes(3 * 1024 + 200), formatBytes(48 << 20)]).toEqual(["512 B", "3.2 KiB", "48.0 MiB"]);
  });
});
