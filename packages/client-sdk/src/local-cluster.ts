/**
 * A development cluster for tests and embedding, like Dask's `LocalCluster`: runs
 * `coordinator dev` from the installed `@dce/coordinator` (an optional peer dependency;
 * this package imports none of its code) and hands back a client for it.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { EXIT_WITH_PARENT_ENV } from "@dce/runtime/launcher";
import { type PackageBinResult, type ResolveModule, resolvePackageBin } from "@dce/runtime/package-bin";
import { createClient, type DceClient } from "./client.js";
import { LocalClusterError } from "./errors.js";

/** Options of {@link startLocalCluster}. */
export interface LocalClusterOptions {
  /** Worker processes. Default 2. */
  readonly workers?: number;
  /** Compute threads per worker. Default: the machine's cores shared out among the workers. */
  readonly threads?: number;
  /**
   * Folder for the cluster's certificates, tokens and data, reused when it already holds
   * them (`coordinator dev --dir`). Default: a new temporary folder, removed by `close()`.
   */
  readonly dir?: string;
  /** How long the cluster may take to start (every worker registered), in ms. Default 120 000. */
  readonly startTimeoutMs?: number;
}

/** A running development cluster: a coordinator and its workers, in processes of their own. */
export interface LocalCluster {
  /** The coordinator's base URL, `https://127.0.0.1:PORT` (a free port). */
  readonly url: string;
  /** The CA certificate (PEM) the coordinator's certificate chains to. */
  readonly ca: string;
  /** Path of that CA certificate, for `DCE_CA`. */
  readonly caPath: string;
  /** A client token of the cluster, for `DCE_TOKEN`. */
  readonly token: string;
  /** A client of the cluster, made with {@link LocalCluster.url}, `ca` and `token`. */
  readonly client: DceClient;
  /** PID of the `coordinator dev` process (the workers are its children). */
  readonly pid: number;
  /** The folder holding the cluster's files. */
  readonly dir: string;
  /**
   * Stops the cluster: SIGTERM to the `coordinator dev` process by PID, which stops its
   * workers and the coordinator; SIGKILL if it has not exited 30 s later. Removes the
   * folder when `startLocalCluster` made it. Idempotent (same promise).
   */
  close(): Promise<void>;
  /** {@link LocalCluster.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

const DEFAULT_START_TIMEOUT_MS = 120_000;
/** `coordinator dev` drains its workers (10 s each, at once) and then closes the coordinator. */
const CLOSE_TIMEOUT_MS = 30_000;
/** Output of `coordinator dev` kept for error messages. */
const STDERR_TAIL_CHARS = 4_000;

/**
 * The `coordinator` bin of the installed `@dce/coordinator`, or a message saying to install it.
 * @param resolveModule module resolution; by default from this package, as Node would.
 * @internal
 */
export function resolveCoordinatorBin(resolveModule: ResolveModule = createRequire(import.meta.url).resolve): PackageBinResult {
  return resolvePackageBin("@dce/coordinator", "coordinator", resolveModule);
}

/**
 * Reads `export NAME=VALUE` lines as a POSIX shell would, for values that are bare
 * words or single-quoted (what `coordinator dev` prints).
 * @internal
 */
export function parseShellExports(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^export ([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (!m?.[1] || m[2] === undefined) continue;
    // 'a'\''b' is the word a'b: quoted runs and escaped quotes, concatenated.
    const value = m[2].startsWith("'") ? [...m[2].matchAll(/'([^']*)'|\\(.)/g)].map((p) => p[1] ?? p[2]).join("") : m[2];
    out.set(m[1], value);
  }
  return out;
}

/**
 * Starts a development cluster on this machine: `coordinator dev --port 0` with
 * `workers` worker processes, TLS and authentication on, and returns its address, CA,
 * a client token and a client. Needs `@dce/coordinator` and `@dce/worker` installed
 * next to this package. If this process ends without `close()`, the cluster notices
 * within a second and stops itself.
 *
 * @example
 * ```ts
 * import { startLocalCluster } from "@dce/client-sdk";
 *
 * const cluster = await startLocalCluster({ workers: 2 });
 * try {
 *   const a = { rows: 2, cols: 2, data: new Float64Array([1, 2, 3, 4]) };
 *   const job = await cluster.client.submitMatMul(a, a);
 *   console.log((await job.result()).data); // Float64Array [7, 10, 15, 22]
 * } finally {
 *   await cluster.close(); // or `await using cluster = ...` where the runtime has it
 * }
 * ```
 *
 * @throws LocalClusterError when `@dce/coordinator` is not installed, or the cluster
 *   exits or does not start within `startTimeoutMs` (the message ends with its output).
 */
export async function startLocalCluster(options: LocalClusterOptions = {}): Promise<LocalCluster> {
  const bin = resolveCoordinatorBin();
  if (!bin.ok) throw new LocalClusterError(`startLocalCluster: ${bin.message} @dce/worker`);
  const madeDir = options.dir === undefined;
  const dir = resolve(options.dir ?? mkdtempSync(join(tmpdir(), "dce-local-")));
  const args = ["dev", "--port", "0", "--dir", dir, "--workers", String(options.workers ?? 2)];
  if (options.threads !== undefined) args.push("--threads", String(options.threads));
  const child = spawn(process.execPath, [bin.path, ...args], {
    // `coordinator dev` then watches this process and stops itself when it goes away
    // without close() (@dce/runtime/launcher).
    env: { ...process.env, [EXIT_WITH_PARENT_ENV]: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= stopChild(child, exited).finally(() => {
      if (madeDir) rmSync(dir, { recursive: true, force: true });
    });
    return closing;
  };
  let exports: Map<string, string>;
  try {
    exports = await readExports(child, options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
  } catch (e) {
    await close();
    throw e;
  }
  // Started: this process may exit without waiting for the cluster (see above).
  child.unref();
  for (const stream of [child.stdout, child.stderr]) (stream as { unref?: () => void } | null)?.unref?.();
  const url = exports.get("DCE_COORDINATOR") ?? "";
  const caPath = exports.get("DCE_CA") ?? "";
  const token = exports.get("DCE_TOKEN") ?? "";
  const ca = readFileSync(caPath, "utf8");
  return {
    url,
    ca,
    caPath,
    token,
    client: createClient({ baseUrl: url, ca, token }),
    pid: child.pid ?? -1,
    dir,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Waits for the three exports on the child's stdout; keeps draining its stderr for good. */
function readExports(child: ChildProcess, timeoutMs: number): Promise<Map<string, string>> {
  let stdout = "";
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-STDERR_TAIL_CHARS);
  });
  return new Promise((done, fail) => {
    const failWith = (what: string, cause?: unknown) => {
      clearTimeout(timer);
      fail(
        new LocalClusterError(`startLocalCluster: coordinator dev ${what}${stderr ? `:\n${stderr.trimEnd()}` : ""}`, { cause }),
      );
    };
    const timer = setTimeout(() => failWith(`did not start within ${timeoutMs} ms`), timeoutMs);
    child.once("error", (e) => failWith(`could not be started (${e.message})`, e));
    const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
      failWith(`exited with ${code ?? signal} before it was ready`);
    child.once("exit", onExit);
    child.stdout?.on("data", (d: Buffer) => {
      stdout += d.toString();
      const found = parseShellExports(stdout);
      if (!found.has("DCE_COORDINATOR") || !found.has("DCE_CA") || !found.has("DCE_TOKEN")) return;
      clearTimeout(timer);
      child.off("exit", onExit);
      done(found);
    });
  });
}

/** SIGTERM by PID, then SIGKILL if the process has not exited within {@link CLOSE_TIMEOUT_MS}. */
async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((done) => {
    timer = setTimeout(() => done(true), CLOSE_TIMEOUT_MS);
  });
  if (await Promise.race([exited.then(() => false), late])) {
    child.kill("SIGKILL");
    await exited;
  }
  clearTimeout(timer);
}
