/**
 * A development cluster in one process tree, like `temporal server start-dev`: an
 * embedded coordinator (TLS, authentication on: as secure as production, only
 * self-contained) on 127.0.0.1 and N processes of the installed `worker` bin, each with
 * its own certificate. `coordinator dev` runs it (`dev-command.ts`).
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import type { Stream } from "node:stream";
import { EXIT_WITH_PARENT_ENV } from "@dce/runtime/launcher";
import { type PackageBinResult, type ResolveModule, resolvePackageBin } from "@dce/runtime/package-bin";
import type { Logger } from "pino";
import { type RunningCoordinator, startCoordinator } from "../server.js";
import type { DevCommand } from "./dev-args.js";
import { type DevFiles, prepareDevFiles } from "./dev-files.js";
import { WorkerFleet } from "./worker-fleet.js";

/** How long the workers get to register before the start fails, in ms. */
const REGISTER_TIMEOUT_MS = 120_000;

/**
 * The `worker` bin of the installed `@dce/worker` (an optional peer dependency: the
 * coordinator never imports its code). When it is missing, the message says to
 * `npm install @dce/worker`.
 * @param resolve module resolution; by default from this package, as Node would.
 */
export function resolveWorkerBin(resolve: ResolveModule = createRequire(import.meta.url).resolve): PackageBinResult {
  return resolvePackageBin("@dce/worker", "worker", resolve);
}

/** Options of {@link startDevCluster}. */
export interface DevClusterOptions {
  readonly command: DevCommand;
  /** The `worker` bin (see {@link resolveWorkerBin}). */
  readonly workerBin: string;
  /** The Node.js executable the workers run on. */
  readonly execPath: string;
  /** Environment of the worker processes. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Where the workers' stdout and stderr go: never this process's stdout, which carries the exports. */
  readonly workerOutput: Stream | number | "ignore";
  readonly logger: Logger;
  /** Aborting stops a start under way: what started is stopped again and the start rejects. */
  readonly signal?: AbortSignal;
}

/** A running development cluster. */
export interface DevCluster {
  /** The coordinator's base URL, `https://127.0.0.1:PORT`. */
  readonly url: string;
  readonly files: DevFiles;
  /** Compute threads of each worker. */
  readonly threads: number;
  /** PIDs of the worker processes running now. */
  workerPids(): number[];
  /** Resolves with a reason when a worker kept dying or the journal failed: the cluster should be closed, exit 1. */
  readonly failed: Promise<string>;
  /** Stops the workers (SIGTERM by PID, SIGKILL after the grace time), then the coordinator. Idempotent. */
  close(): Promise<void>;
  /** SIGKILLs the workers at once (a second signal); the coordinator is left to the process exit. */
  kill(): void;
}

/**
 * Prepares the folder (certificates, tokens, data dir; reused when present), starts the
 * coordinator and the workers, and resolves once every worker has registered.
 * @throws when the folder cannot be prepared, the port is taken (`EADDRINUSE`), a worker
 *   keeps dying or does not register in time, or `signal` aborts; what started is stopped first.
 */
export async function startDevCluster(o: DevClusterOptions): Promise<DevCluster> {
  const { command: cmd, logger } = o;
  const threads = cmd.threads ?? Math.max(1, Math.floor(availableParallelism() / cmd.workers));
  const files = await prepareDevFiles(cmd.dir, cmd.workers);
  o.signal?.throwIfAborted();
  logger.info({ dir: files.dir, createdCa: files.createdCa, ca: files.caPath }, "dev cluster files ready");
  let onFatal: (reason: string) => void = () => {};
  const fatal = new Promise<string>((resolve) => {
    onFatal = resolve;
  });
  const running = await startCoordinator({
    host: "127.0.0.1",
    port: cmd.port,
    tlsDir: files.tlsDir,
    dataDir: files.dataDir,
    logger,
    // The journal cannot be written: stop the cluster and exit 1 (the coordinator bin exits 70);
    // the next run recovers from the journal.
    onFatal: () => onFatal(`the coordinator cannot write its journal in ${files.dataDir}`),
  });
  const certOf = new Map(files.workers.map((w) => [w.name, w]));
  const fleet = new WorkerFleet({
    logger,
    spawn: (name): ChildProcess => {
      const cert = certOf.get(name);
      if (!cert) throw new Error(`no certificate for worker ${name}`);
      const args = [
        ...["--coordinator", running.url, "--ca", files.caPath, "--cert", cert.cert, "--key", cert.key],
        ...["--name", name, "--threads", String(threads), "--shutdown-grace-ms", String(cmd.shutdownGraceMs)],
        ...["--log-level", cmd.logLevel],
      ];
      return spawn(o.execPath, [o.workerBin, ...args], {
        // With it, a worker drains and exits when this process goes away, however it ends
        // (SIGKILL included): the launcher watch of @dce/runtime/launcher.
        env: { ...o.env, [EXIT_WITH_PARENT_ENV]: "1" },
        stdio: ["ignore", o.workerOutput, o.workerOutput],
        // A group of its own: Ctrl-C in a terminal signals this process only, which then
        // stops each worker once (a worker signalled twice would skip its drain).
        detached: true,
      });
    },
  });
  let closing: Promise<void> | undefined;
  const cluster: DevCluster = {
    url: running.url,
    files,
    threads,
    workerPids: () => fleet.pids(),
    failed: Promise.race([fleet.failed, fatal]),
    close() {
      closing ??= closeAll(fleet, running, cmd.shutdownGraceMs, logger);
      return closing;
    },
    kill: () => fleet.kill(),
  };
  try {
    for (const w of files.workers) fleet.add(w.name);
    await waitForWorkers(
      running,
      files.workers.map((w) => w.name),
      cluster.failed,
      o.signal,
    );
  } catch (e) {
    await cluster.close();
    throw e;
  }
  return cluster;
}

/** Stops the workers first (they release their leases to a live coordinator), then the coordinator; each step runs even if the other throws. */
async function closeAll(fleet: WorkerFleet, running: RunningCoordinator, graceMs: number, logger: Logger): Promise<void> {
  let failure: unknown;
  try {
    // A little over the workers' own drain time: they SIGKILL nothing themselves.
    await fleet.stop(graceMs + 2_000);
  } catch (e) {
    failure = e;
    logger.error({ err: e }, "stopping the workers failed");
  }
  await running.close();
  if (failure !== undefined) throw failure;
}

/**
 * Resolves once a worker of each name has registered with the coordinator; rejects when
 * the fleet failed, `signal` aborted, or {@link REGISTER_TIMEOUT_MS} passed.
 */
async function waitForWorkers(
  running: RunningCoordinator,
  names: readonly string[],
  failed: Promise<string>,
  signal: AbortSignal | undefined,
): Promise<void> {
  let failure: string | undefined;
  void failed.then((reason) => {
    failure = reason;
  });
  const deadline = Date.now() + REGISTER_TIMEOUT_MS;
  for (;;) {
    signal?.throwIfAborted();
    if (failure !== undefined) throw new Error(failure);
    const registered = new Set([...running.coordinator.state.workers.values()].map((w) => w.name));
    const missing = names.filter((n) => !registered.has(n));
    if (missing.length === 0) return;
    if (Date.now() > deadline) throw new Error(`workers ${missing.join(", ")} did not register within ${REGISTER_TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
