/**
 * `coordinator dev`: runs a {@link startDevCluster | development cluster} until
 * SIGINT/SIGTERM. `cli.ts` hands it the process, so this module reads nothing global.
 *
 * @module
 */
import type { Writable } from "node:stream";
import { watchLauncher } from "@dce/runtime/launcher";
import { createLogger } from "@dce/runtime/logging";
import type { PackageBinResult } from "@dce/runtime/package-bin";
import type { DevCommand } from "./dev-args.js";
import { type DevCluster, resolveWorkerBin, startDevCluster } from "./dev-cluster.js";

/** What `coordinator dev` uses of its process; `cli.ts` passes `process`. */
export interface DevProcess {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly execPath: string;
  readonly pid: number;
  readonly ppid: number;
  readonly stdout: { write(text: string): unknown };
  /** Logs and the human lines; the workers write here too. */
  readonly stderr: Writable & { readonly isTTY?: boolean };
  on(signal: "SIGINT" | "SIGTERM", listener: (signal: NodeJS.Signals) => void): unknown;
  kill(pid: number, signal: NodeJS.Signals): unknown;
}

/** `s` as one word a POSIX shell reads back unchanged: bare when it is safe, single-quoted otherwise. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/** The three lines `coordinator dev` prints on stdout for a shell to `eval`. */
export function devExports(cluster: Pick<DevCluster, "url" | "files">): string {
  return (
    `export DCE_COORDINATOR=${shellQuote(cluster.url)}\n` +
    `export DCE_CA=${shellQuote(cluster.files.caPath)}\n` +
    `export DCE_TOKEN=${shellQuote(cluster.files.token)}\n`
  );
}

/** The lines `coordinator dev` prints on stderr once it is ready: what runs, the dashboard, how to stop it. */
export function devBanner(cluster: Pick<DevCluster, "url" | "files" | "threads">, pid: number): string {
  const n = cluster.files.workers.length;
  const count = (k: number, what: string) => `${k} ${what}${k === 1 ? "" : "s"}`;
  return (
    `dce dev cluster: coordinator ${cluster.url}, ${count(n, "worker")} x ${count(cluster.threads, "thread")} each, files in ${cluster.files.dir}\n` +
    `  dashboard: ${cluster.url}/ui#token=${cluster.files.adminToken}\n` +
    `  stop: Ctrl-C, or kill ${pid} (SIGTERM); use it from a shell: eval the three export lines above\n`
  );
}

/**
 * Runs `coordinator dev` to its end. Prints the exports once every worker has
 * registered; the first SIGINT/SIGTERM (or the npx launcher going away) stops the
 * workers and the coordinator and exits 0, a second one exits at once with 1.
 * @param findWorkerBin where the `worker` bin is; a parameter for tests.
 * @returns the exit code: 0 after a clean stop, 1 when the cluster failed, 2 when
 *   `@dce/worker` is not installed.
 */
export async function runDevCommand(
  cmd: DevCommand,
  proc: DevProcess,
  findWorkerBin: () => PackageBinResult = resolveWorkerBin,
): Promise<number> {
  const workerBin = findWorkerBin();
  if (!workerBin.ok) {
    proc.stderr.write(`coordinator dev: ${workerBin.message}\n`);
    return 2;
  }
  const logger = createLogger({
    level: cmd.logLevel,
    format: "auto",
    isTty: proc.stderr.isTTY === true,
    base: { svc: "coordinator", pid: proc.pid },
  });
  const starting = new AbortController();
  let cluster: DevCluster | undefined;
  let signals = 0;
  let onStop: (code: number) => void = () => {};
  const stopped = new Promise<number>((resolve) => {
    onStop = resolve;
  });
  const stop = (code: number) => {
    if (!cluster) return;
    cluster.close().then(
      () => onStop(code),
      (e: unknown) => {
        logger.error({ err: e }, "shutdown failed");
        onStop(1);
      },
    );
  };
  // Installed before anything starts, so no signal leaves a worker behind.
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      logger.warn({ signal }, "second signal; killing the workers without draining");
      cluster?.kill();
      onStop(1);
      return;
    }
    logger.info({ signal }, "stopping the dev cluster");
    starting.abort();
    stop(0);
  };
  proc.on("SIGTERM", onSignal);
  proc.on("SIGINT", onSignal);
  // Under npx, a supervisor's SIGTERM stops npm and sh but not this process: act on it.
  watchLauncher(proc, () => proc.kill(proc.pid, "SIGTERM"));
  const start = startDevCluster({
    command: cmd,
    workerBin: workerBin.path,
    execPath: proc.execPath,
    env: proc.env,
    workerOutput: proc.stderr,
    logger,
    signal: starting.signal,
  });
  // A second signal during the start exits at once; the workers' launcher watch stops them.
  const started = await Promise.race([
    start.then(
      (c) => ({ cluster: c }),
      (e: unknown) => ({ error: e }),
    ),
    stopped.then((code) => ({ code })),
  ]);
  if ("code" in started) return started.code;
  if ("error" in started) {
    // A start stopped by a signal has cleaned up after itself: that is a clean stop.
    if (starting.signal.aborted) return 0;
    proc.stderr.write(`coordinator dev: ${(started.error as Error).message}\n`);
    return 1;
  }
  cluster = started.cluster;
  if (starting.signal.aborted) {
    // The signal came as the last worker registered: the start did not see it.
    stop(0);
    return await stopped;
  }
  void cluster.failed.then((reason) => {
    logger.error({ reason }, "the dev cluster failed; stopping it");
    stop(1);
  });
  proc.stdout.write(devExports(cluster));
  proc.stderr.write(devBanner(cluster, proc.pid));
  return await stopped;
}
