import { describe, expect, it } from "vitest";
import { LocalClusterError } from "./errors.js";
import { parseShellExports, resolveCoordinatorBin } from "./local-cluster.js";

describe("parseShellExports", () => {
  it("reads bare and single-quoted values as a shell would", () => {
    const text =
      "export DCE_COORDINATOR=https://127.0.0.1:7070\n" +
      "export DCE_CA='/home/it'\\''s me/ca.pem'\n" +
      "export DCE_TOKEN=dce_abc\n";
    expect(Object.fromEntries(parseShellExports(text))).toEqual({
      DCE_COORDINATOR: "https://127.0.0.1:7070",
      DCE_CA: "/home/it's me/ca.pem",
      DCE_TOKEN: "dce_abc",
    });
  });

  it("ignores everything else", () => {
    expect(parseShellExports("listening\nexport lower=x\nDCE_X=1\n").size).toBe(0);
  });
});

describe("resolveCoordinatorBin", () => {
  it("says to install the coordinator when it is missing", () => {
    const r = resolveCoordinatorBin((id) => {
      throw Object.assign(new Error(`Cannot find module '${id}'`), { code: "MODULE_NOT_FOUND" });
    });
    expect(r).toEqual({ ok: false, message: "@dce/coordinator is not installed; run: npm install @dce/coordinator" });
  });

  it("finds the installed coordinator bin", () => {
    const r = resolveCoordinatorBin();
    expect(r.ok && r.path).toMatch(/coordinator[\\/]bin[\\/]coordinator\.js$/);
  });
});

describe("LocalClusterError", () => {
  it("is a DceError with its own name", async () => {
    const { DceError } = await import("./errors.js");
    const e = new LocalClusterError("x");
    expect(e).toBeInstanceOf(DceError);
    expect(e.name).toBe("LocalClusterError");
  });
});
