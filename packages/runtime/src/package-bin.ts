/**
 * Finds the bin of another dce package at run time (`@dce/runtime/package-bin`,
 * Node.js only). `coordinator dev` starts the `worker` bin and the SDK's
 * `startLocalCluster` the `coordinator` bin without importing either package's code:
 * each is an optional peer dependency, installed next to the one that needs it.
 *
 * @packageDocumentation
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** What {@link resolvePackageBin} found: the bin's absolute path, or one line saying what to install. */
export type PackageBinResult = { ok: true; path: string } | { ok: false; message: string };

/** How a module id is resolved to a file, like `createRequire(import.meta.url).resolve`. */
export type ResolveModule = (id: string) => string;

/**
 * Resolves the executable `bin` of the installed package `packageName`: its
 * `package.json` through `resolve` (so the package's `exports` must list
 * `./package.json`), then the `bin` entry named `bin`.
 *
 * Never throws: a package that is not installed, or whose manifest has no such bin,
 * gives `{ ok: false }` with a message that names the `npm install` to run.
 * @param resolve resolves from the caller's module: `createRequire(import.meta.url).resolve`.
 * @param readText reads the manifest; a parameter so tests need no files.
 */
export function resolvePackageBin(
  packageName: string,
  bin: string,
  resolve: ResolveModule,
  readText: (path: string) => string = (path) => readFileSync(path, "utf8"),
): PackageBinResult {
  const install = `npm install ${packageName}`;
  let manifestPath: string;
  try {
    manifestPath = resolve(`${packageName}/package.json`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "MODULE_NOT_FOUND" || code === "ERR_MODULE_NOT_FOUND") {
      return { ok: false, message: `${packageName} is not installed; run: ${install}` };
    }
    return { ok: false, message: `cannot resolve ${packageName}: ${(e as Error).message}; run: ${install}` };
  }
  let entry: unknown;
  try {
    const manifest = JSON.parse(readText(manifestPath)) as { bin?: unknown };
    entry =
      typeof manifest.bin === "object" && manifest.bin !== null ? (manifest.bin as Record<string, unknown>)[bin] : undefined;
  } catch (e) {
    return { ok: false, message: `cannot read ${manifestPath}: ${(e as Error).message}; reinstall it: ${install}` };
  }
  if (typeof entry !== "string" || entry === "") {
    return { ok: false, message: `${manifestPath} has no "${bin}" bin; reinstall it: ${install}` };
  }
  return { ok: true, path: join(dirname(manifestPath), entry) };
}
