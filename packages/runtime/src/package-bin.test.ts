import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { resolvePackageBin } from "./package-bin.js";

const notFound = (id: string): string => {
  throw Object.assign(new Error(`Cannot find module '${id}'`), { code: "MODULE_NOT_FOUND" });
};

describe("resolvePackageBin", () => {
  it("finds the bin next to the resolved package.json", () => {
    const r = resolvePackageBin(
      "@dce/worker",
      "worker",
      (id) => (id === "@dce/worker/package.json" ? "/app/node_modules/@dce/worker/package.json" : notFound(id)),
      () => JSON.stringify({ bin: { worker: "./bin/worker.js" } }),
    );
    expect(r).toEqual({ ok: true, path: join("/app/node_modules/@dce/worker", "bin/worker.js") });
  });

  it("names the npm install to run when the package is missing", () => {
    const r = resolvePackageBin("@dce/worker", "worker", notFound);
    expect(r).toEqual({ ok: false, message: "@dce/worker is not installed; run: npm install @dce/worker" });
  });

  it("says so when the manifest has no such bin", () => {
    const r = resolvePackageBin(
      "@dce/worker",
      "worker",
      () => "/x/package.json",
      () => JSON.stringify({ bin: { other: "a.js" } }),
    );
    expect(r.ok).toBe(false);
    expect(!r.ok && r.message).toMatch(/no "worker" bin; reinstall it: npm install @dce\/worker/);
  });
});
