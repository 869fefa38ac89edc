/**
 * The `worker` command: parses flags and environment, then runs a {@link Worker} until
 * SIGINT/SIGTERM (drain, exit 0; a second signal exits at once with 1) or a fatal
 * error (exit 1). Usage errors exit 2. Logs go to stderr: JSON lines, or pretty lines
 * when stderr is a terminal (`--log-format` overrides).
 *
 * This is the only module that reads `process`; importing it runs the command.
 *
 * @packageDocumentation
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { Code, ConnectError } from "@connectrpc/connect";
import { tolerateClosedPipe } from "@dce/runtime/closed-pipe";
import { watchLauncher } from "@dce/runtime/launcher";
import { createLogger } from "@dce/runtime/logging";
import { chaosEnabled, chaosReporter } from "./chaos/chaos-reporter.js";
import { parseArgs } from "./cli-args.js";
import { explainCredentialFailure, tlsFileProblems } from "./credentials.js";
import { RetryBudgetExceededError } from "./errors.js";
import { selectKernels } from "./kernels/kernel.js";
import { version } from "./version.js";
import { Worker } from "./worker.js";

async function main(): Promise<number> {
  // A reader that goes away (`--help | head`, logs piped to a pager that quit) is no crash.
  tolerateClosedPipe(process.stdout, () => {
    process.exitCode = 1;
  });
  tolerateClosedPipe(process.stderr, () => {});
  const parsed = parseArgs(process.argv.slice(2), process.env);
  if (!parsed.ok) {
    (parsed.exitCode === 0 ? process.stdout : process.stderr).write(parsed.usage);
    return parsed.exitCode;
  }
  const { config } = parsed;
  // Synchronous writes: every line is out before process.exit().
  const logger = createLogger({
    level: config.logLevel,
    format: config.logFormat,
    isTty: process.stderr.isTTY === true,
    base: { svc: "worker", pid: process.pid, hostname: hostname() },
    sync: true,
  });

  const read = (file: string | undefined, flag: string): Buffer | undefined | null => {
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch (e) {
      process.stderr.write(`error: cannot read ${flag} file ${file}: ${e instanceof Error ? e.message : e}\n`);
      return null;
    }
  };
  const ca = read(config.caFile, "--ca / DCE_CA");
  const cert = read(config.certFile, "--cert");
  const key = read(config.keyFile, "--key");
  if (ca === null || cert === null || key === null) return 2;
  const given = (path: string | undefined, bytes: Buffer | undefined) =>
    path === undefined || bytes === undefined ? undefined : { path, bytes };
  const files = { ca: given(config.caFile, ca), cert: given(config.certFile, cert), key: given(config.keyFile, key) };
  // Node ignores a CA file that is not PEM and then trusts nothing: refuse it here, like a missing file.
  const problems = tlsFileProblems(files);
  for (const problem of problems) process.stderr.write(`error: ${problem}\n`);
  if (problems.length > 0) return 2;

  // Which kernels this worker advertises (the Worker registers with listKernels()). With
  // auto, a kernel that cannot run here is logged once and left out; one named
  // explicitly in --kernels must run, or the worker does not start.
  const selection = selectKernels(config.kernels);
  for (const { name, reason } of selection.unavailable) {
    if (config.kernels === "auto") logger.warn({ kernel: name, reason }, `${name} unavailable: ${reason}`);
    else logger.fatal({ kernel: name, reason }, `${name} unavailable: ${reason}`);
  }
  if (config.kernels !== "auto" && selection.unavailable.length > 0) return 1;
  logger.debug({ kernels: selection.kernels.map((k) => k.fingerprint) }, "kernels selected");

  const chaos = {
    crashRate: config.chaosCrashRate,
    delayMs: config.chaosDelayMs,
    dropRate: config.chaosDropRate,
    corruptRate: config.chaosCorruptRate,
    ...(config.chaosCrashOnShard === undefined ? {} : { crashOnShard: config.chaosCrashOnShard }),
  };
  const worker = new Worker({
    coordinatorUrl: config.coordinatorUrl,
    ca,
    cert,
    key,
    name: config.name,
    threads: config.threads,
    cacheBytes: config.cacheBytes,
    useLocalStore: config.localStore === "auto",
    maxMessageBytes: config.maxMessageBytes,
    shutdownGraceMs: config.shutdownGraceMs,
    retryBudgetMs: config.retryBudgetMs,
    peerListen: config.peerListen,
    peerAdvertise: config.peerAdvertise,
    peerTimeoutMs: config.peerTimeoutMs,
    logger,
    // --chaos-*: faults injected around the worker's report port, from outside the worker.
    // Dying is abrupt on purpose: no drain, no flush, exactly like a crash.
    ...(chaosEnabled(chaos)
      ? { wrapReporter: chaosReporter({ ...chaos, crash: () => process.kill(process.pid, "SIGKILL") }) }
      : {}),
  });

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      logger.info(
        { signal, shutdownGraceMs: config.shutdownGraceMs },
        "signal received; draining (send it again to exit at once)",
      );
      void worker.close();
    } else {
      logger.warn({ signal }, "second signal; exiting without draining");
      process.exit(1);
    }
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // Under npx, a supervisor's SIGTERM stops npm and sh but not this process: act on it.
  watchLauncher(process, () => process.kill(process.pid, "SIGTERM"));

  logger.debug({ version, coordinator: config.coordinatorUrl }, "worker starting");
  try {
    await worker.start();
    await worker.wait();
    return 0;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    // Trust failures stop the worker at once (worker.ts does not retry them): say what to fix.
    const explained = await explainCredentialFailure(e, { coordinatorUrl: config.coordinatorUrl, files });
    if (explained !== undefined) {
      logger.fatal(explained.fields, explained.message);
    } else if (e instanceof RetryBudgetExceededError) {
      logger.fatal(
        { err: message, coordinator: config.coordinatorUrl, retryBudgetMs: e.retryBudgetMs },
        `giving up: cannot reach the coordinator at ${config.coordinatorUrl} within the retry budget of ${e.retryBudgetMs} ms`,
      );
    } else if (e instanceof ConnectError && (e.code === Code.Unauthenticated || e.code === Code.PermissionDenied)) {
      logger.fatal(
        { err: message, coordinator: config.coordinatorUrl, code: Code[e.code] },
        `giving up: the coordinator at ${config.coordinatorUrl} refused this worker's credentials`,
      );
    } else {
      logger.fatal({ err: message }, "worker failed");
    }
    await worker.close();
    return 1;
  }
}

main().then(
  // A write to stdout that failed other than by a closed pipe set 1 already (tolerateClosedPipe).
  (code) => process.exit(code || (process.exitCode === 1 ? 1 : 0)),
  (e: unknown) => {
    process.stderr.write(`${JSON.stringify({ level: 60, msg: "worker crashed", err: String(e) })}\n`);
    process.exit(1);
  },
);
