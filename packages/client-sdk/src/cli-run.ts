/**
 * Runs a parsed `dce` command. Every effect (files, streams, signal, client)
 * comes in through {@link CliDeps}, so tests drive it with an in-memory
 * coordinator; `cli.ts` wires it to the real process.
 *
 * @packageDocumentation
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { pemProblem } from "@dce/runtime/tls";
import cliProgress from "cli-progress";
import type { CliCommand, ConnectionConfig, ResultCommand, SubmitCommand } from "./cli-args.js";
import { runDelete, runList } from "./cli-run-jobs.js";
import type { ClientOptions, DceClient } from "./client.js";
import { InvalidMatrixError, JobError, NpyFormatError } from "./errors.js";
import type { JobHandle } from "./job-handle.js";
import { npyHeader, parseNpyInPlace } from "./npy.js";
import type { JobProgress, JobStatusInfo, Matrix } from "./types.js";

/** Somewhere to write text (stdout or stderr). */
export interface TextSink {
  write(text: string): unknown;
}

/** The effects a command may use. */
export interface CliDeps {
  /** Builds the SDK client for the resolved connection. */
  createClient(options: ClientOptions): DceClient;
  /** Reads a whole file; rejects with a Node `ErrnoException` on failure. */
  readFile(path: string): Promise<Uint8Array>;
  /** Writes a whole file made of `parts` in order (atomically in the real CLI). */
  writeFile(path: string, parts: readonly Uint8Array[]): Promise<void>;
  /** Results. */
  readonly stdout: TextSink;
  /** Logs, progress and errors. */
  readonly stderr: TextSink;
  /** The stderr stream when it is a terminal: progress is drawn as a bar there. */
  readonly stderrTty?: NodeJS.WritableStream;
  /** Aborted on SIGINT/SIGTERM: stops waiting (the job keeps running). */
  readonly signal: AbortSignal;
  /** Overrides of the polling intervals (tests set them to 0). */
  readonly intervals?: Partial<CliIntervals>;
  /** Monotonic clock in ms for pacing progress lines; default `performance.now`. */
  readonly nowMs?: () => number;
}

/** Pacing of the CLI's status polls and progress lines, in milliseconds. */
export interface CliIntervals {
  /** Least time between GetJob polls while waiting for a job (and bar redraws); default 200. */
  readonly pollMs: number;
  /** Least time between polls of `dce watch`; default 1_000. */
  readonly watchMs: number;
  /**
   * Least time between two plain progress lines (when no bar is drawn); default 2_000.
   * A change of state and the final state are always printed.
   */
  readonly lineMs: number;
}

/** Exit codes of the CLI. */
export const EXIT_OK = 0;
/** Job failed or was cancelled, or an RPC failed. */
export const EXIT_FAILURE = 1;
/** Usage or input problem. */
export const EXIT_USAGE = 2;

const DEFAULT_INTERVALS: CliIntervals = { pollMs: 200, watchMs: 1_000, lineMs: 2_000 };

function intervals(deps: CliDeps): CliIntervals {
  return { ...DEFAULT_INTERVALS, ...deps.intervals };
}

/** An input problem (exit 2) with a one-line message. */
class InputError extends Error {}

/**
 * Runs one command and returns the exit code. Never throws: every failure is
 * reported as one `error: ...` line on stderr.
 */
export async function runCommand(command: CliCommand, deps: CliDeps): Promise<number> {
  try {
    switch (command.kind) {
      case "submit":
        return await runSubmit(command, deps);
      case "result":
        return await runResult(command, deps);
      case "status": {
        const client = await connect(command.connection, deps);
        const status = await client.getJobHandle(command.jobId).status({ signal: deps.signal });
        deps.stdout.write(command.json ? `${JSON.stringify(status)}\n` : formatStatus(status));
        return EXIT_OK;
      }
      case "cancel": {
        const client = await connect(command.connection, deps);
        const status = await client
          .getJobHandle(command.jobId)
          .cancel({ signal: deps.signal, ...(command.reason === undefined ? {} : { reason: command.reason }) });
        deps.stdout.write(command.json ? `${JSON.stringify(status)}\n` : `${status.jobId} ${status.state}\n`);
        return EXIT_OK;
      }
      case "watch": {
        const client = await connect(command.connection, deps);
        const job = client.getJobHandle(command.jobId);
        // On a terminal: the bar on stderr, then the final line on stdout. Otherwise the
        // lines themselves are the output (JSON objects with --json).
        const bar = deps.stderrTty !== undefined && !command.json;
        const last = await followProgress(job, deps, {
          reporter: bar
            ? createProgressBar(job.id, deps.stderrTty as NodeJS.WritableStream)
            : createLineReporter(deps.stdout, intervals(deps).lineMs, clock(deps), command.json),
          minIntervalMs: bar ? intervals(deps).pollMs : intervals(deps).watchMs,
        });
        if (bar && last !== undefined) deps.stdout.write(`${formatProgressLine(last)}\n`);
        return last?.state === "succeeded" ? EXIT_OK : EXIT_FAILURE;
      }
      case "delete":
        await runDelete(await connect(command.connection, deps), command, deps);
        return EXIT_OK;
      case "list":
        await runList(await connect(command.connection, deps), command, deps);
        return EXIT_OK;
    }
  } catch (e) {
    return reportError(e, deps);
  }
}

async function connect(connection: ConnectionConfig, deps: CliDeps): Promise<DceClient> {
  let ca: Uint8Array | undefined;
  if (connection.caPath !== undefined) {
    ca = await readInput(connection.caPath, "--ca / DCE_CA file ", deps);
    // Node ignores a CA that is not PEM and then trusts nothing: refuse it like a missing file.
    const problem = pemProblem(ca, "certificate");
    if (problem !== undefined) throw new InputError(`--ca / DCE_CA file ${connection.caPath} ${problem}`);
  }
  try {
    return deps.createClient({
      baseUrl: connection.baseUrl,
      timeoutMs: connection.timeoutMs,
      useLocalStore: connection.localStore === "auto",
      ...(ca === undefined ? {} : { ca }),
      ...(connection.token === undefined ? {} : { token: connection.token }),
      ...(connection.maxMessageBytes === undefined ? {} : { maxMessageBytes: connection.maxMessageBytes }),
    });
  } catch (e) {
    // Options the SDK rejected that parseArgs let through.
    if (e instanceof TypeError || e instanceof RangeError) throw new InputError(e.message);
    throw e;
  }
}

/** Reads an input file; `what` (e.g. "--ca file ") prefixes the path in the message. */
async function readInput(path: string, what: string, deps: CliDeps): Promise<Uint8Array> {
  try {
    return await deps.readFile(path);
  } catch (e) {
    throw new InputError(`cannot read ${what}${path}: ${describeFsError(e)}`);
  }
}

async function readMatrix(path: string, label: string, deps: CliDeps): Promise<Matrix> {
  const bytes = await readInput(path, "", deps);
  let m: Matrix;
  try {
    // The file's bytes were read for this matrix alone: its data is used in place.
    m = parseNpyInPlace(bytes);
  } catch (e) {
    if (e instanceof NpyFormatError) throw new InputError(`${path}: ${e.message}`);
    throw e;
  }
  if (m.rows === 0 || m.cols === 0) {
    throw new InputError(`${path}: ${label} is empty (${m.rows}x${m.cols}); rows and cols must be at least 1`);
  }
  return m;
}

async function runSubmit(command: SubmitCommand, deps: CliDeps): Promise<number> {
  const [a, b] = await Promise.all([readMatrix(command.aPath, "A", deps), readMatrix(command.bPath, "B", deps)]);
  if (a.cols !== b.rows) {
    throw new InputError(`inner dimensions do not match: A is ${a.rows}x${a.cols}, B is ${b.rows}x${b.cols}`);
  }
  const client = await connect(command.connection, deps);
  const job = await client.submitMatMul(a, b, {
    signal: deps.signal,
    ...(command.tileSize === undefined ? {} : { tileSize: command.tileSize }),
    ...(command.kernel === undefined ? {} : { kernel: command.kernel }),
    ...(command.idempotencyKey === undefined ? {} : { idempotencyKey: command.idempotencyKey }),
    ...(command.priority === undefined ? {} : { priority: command.priority }),
    ...(command.retentionMs === undefined ? {} : { retentionMs: command.retentionMs }),
  });
  // The job id is always the first stdout line, so scripts can `head -1`.
  deps.stdout.write(command.json ? `${JSON.stringify({ jobId: job.id })}\n` : `${job.id}\n`);
  if (!command.wait || command.outputPath === undefined) return EXIT_OK;
  return await waitAndWrite(job, command.outputPath, command.json, deps);
}

async function runResult(command: ResultCommand, deps: CliDeps): Promise<number> {
  const client = await connect(command.connection, deps);
  const job = client.getJobHandle(command.jobId);
  return await waitAndWrite(job, command.outputPath, command.json, deps);
}

/**
 * Waits for the job, then fetches C and writes it. Progress goes to stderr: a bar
 * when stderr is a terminal, plain lines otherwise (stdout keeps only results).
 */
async function waitAndWrite(job: JobHandle, outputPath: string, json: boolean, deps: CliDeps): Promise<number> {
  try {
    await followProgress(job, deps, {
      reporter:
        deps.stderrTty !== undefined
          ? createProgressBar(job.id, deps.stderrTty)
          : createLineReporter(deps.stderr, intervals(deps).lineMs, clock(deps), false),
      minIntervalMs: intervals(deps).pollMs,
    });
    const c = await job.result({ signal: deps.signal, minIntervalMs: intervals(deps).pollMs });
    try {
      // The header, then C's own bytes: no copy of C into one buffer.
      await deps.writeFile(outputPath, [npyHeader(c), new Uint8Array(c.data.buffer, c.data.byteOffset, c.data.byteLength)]);
    } catch (e) {
      deps.stderr.write(
        `error: cannot write ${outputPath}: ${describeFsError(e)}\n` +
          `the job succeeded; fetch it again with: dce result ${job.id} -o FILE\n`,
      );
      return EXIT_FAILURE;
    }
    if (json) {
      deps.stdout.write(
        `${JSON.stringify({ jobId: job.id, state: "succeeded", output: outputPath, rows: c.rows, cols: c.cols })}\n`,
      );
    } else {
      deps.stderr.write(`wrote ${outputPath} (${c.rows}x${c.cols})\n`);
    }
    return EXIT_OK;
  } catch (e) {
    if (e instanceof ConnectError && e.code === Code.Canceled && deps.signal.aborted) {
      // Interrupted by the user: the job itself is untouched.
      deps.stderr.write(`stopped waiting; job ${job.id} keeps running (dce result ${job.id} -o FILE)\n`);
    }
    throw e;
  }
}

/** Shows a job's progress to people: a bar, or plain lines. */
interface ProgressReporter {
  update(p: JobProgress): void;
  stop(): void;
}

function clock(deps: CliDeps): () => number {
  return deps.nowMs ?? (() => performance.now());
}

/**
 * Feeds every figure of the SDK's `progress()` (the same done, total, rate and ETA a
 * program gets) to `reporter` until the job ends; returns the last one.
 */
async function followProgress(
  job: JobHandle,
  deps: CliDeps,
  o: { reporter: ProgressReporter; minIntervalMs: number },
): Promise<JobProgress | undefined> {
  let last: JobProgress | undefined;
  try {
    for await (const p of job.progress({ signal: deps.signal, minIntervalMs: o.minIntervalMs })) {
      o.reporter.update(p);
      last = p;
    }
  } finally {
    o.reporter.stop();
  }
  return last;
}

/**
 * Plain progress lines for logs and pipes: the first figure, every change of state,
 * the final state, and otherwise at most one line per `everyMs`. With `json`, each
 * line is the {@link JobProgress} object.
 */
export function createLineReporter(sink: TextSink, everyMs: number, nowMs: () => number, json: boolean): ProgressReporter {
  let lastState: string | undefined;
  let lastLineMs = Number.NEGATIVE_INFINITY;
  return {
    update(p) {
      const t = nowMs();
      const terminal = p.state === "succeeded" || p.state === "failed" || p.state === "cancelled";
      if (p.state === lastState && !terminal && t - lastLineMs < everyMs) return;
      lastState = p.state;
      lastLineMs = t;
      sink.write(json ? `${JSON.stringify(p)}\n` : `${formatProgressLine(p)}\n`);
    },
    stop() {},
  };
}

/** A cli-progress bar with shards done/total, rate and ETA. */
function createProgressBar(jobId: string, stream: NodeJS.WritableStream): ProgressReporter {
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: `job ${jobId} |{bar}| {value}/{total} shards ({percentage}%) | {rate} | eta {eta_text} | {state}`,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(p) {
      const payload = { rate: formatRate(p.rateShardsPerSec), eta_text: formatEta(p.etaMs), state: p.state };
      if (!started) {
        bar.start(p.shardsTotal, p.shardsDone, payload);
        started = true;
      } else {
        bar.setTotal(p.shardsTotal);
        bar.update(p.shardsDone, payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

function formatRate(rate: number | undefined): string {
  return rate === undefined ? "- shards/s" : `${rate.toFixed(1)} shards/s`;
}

/** Formats a duration as `6.7s` (under 10 s), `17s`, `3m05s` or `1h02m`; `-` when unknown. */
export function formatEta(ms: number | undefined): string {
  if (ms === undefined) return "-";
  if (ms < 9_950) return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
  const totalSec = Math.ceil(ms / 1000);
  if (totalSec < 60) return `${totalSec}s`;
  const totalMin = Math.floor(totalSec / 60);
  if (totalMin < 60) return `${totalMin}m${String(totalSec % 60).padStart(2, "0")}s`;
  return `${Math.floor(totalMin / 60)}h${String(totalMin % 60).padStart(2, "0")}m`;
}

/**
 * One human-readable progress line, e.g.
 * `job 1f0c… running 37/120 shards (30.8%) 12.3 shards/s eta 6.7s`; a finished job
 * shows its run time (`in 9.8s`) instead of an ETA, and a failed one its error.
 */
export function formatProgressLine(p: JobProgress): string {
  const pct = p.shardsTotal > 0 ? (100 * p.shardsDone) / p.shardsTotal : 0;
  const parts = [`job ${p.jobId} ${p.state} ${p.shardsDone}/${p.shardsTotal} shards (${pct.toFixed(1)}%)`];
  if (p.rateShardsPerSec !== undefined) parts.push(formatRate(p.rateShardsPerSec));
  const ended = p.state === "succeeded" || p.state === "failed" || p.state === "cancelled";
  if (!ended && p.etaMs !== undefined) parts.push(`eta ${formatEta(p.etaMs)}`);
  if (ended && p.startedAtMs !== undefined && p.finishedAtMs !== undefined) {
    parts.push(`in ${formatEta(p.finishedAtMs - p.startedAtMs)}`);
  }
  const line = parts.join(" ");
  return p.error === undefined ? line : `${line}: ${oneLine(p.error)}`;
}

function formatStatus(s: JobStatusInfo): string {
  const time = (ms: number | undefined): string => (ms === undefined ? "-" : new Date(ms).toISOString());
  const lines = [
    ["job", s.jobId],
    ["state", s.state],
    ["shards", `${s.shardsDone}/${s.shardsTotal} done, ${s.shardsLeased} leased, ${s.shardsRetried} retried`],
    ["result", `${s.rows}x${s.cols} in ${s.tileRows}x${s.tileCols} tiles`],
    ["kernel", s.kernel === "" ? "auto" : s.kernel],
    ["priority", String(s.priority)],
    ["created", time(s.createdAtMs)],
    ["started", time(s.startedAtMs)],
    ["finished", time(s.finishedAtMs)],
    ["expires", time(s.expiresAtMs)],
    ["owner", s.owner],
    ...(s.error === undefined ? [] : [["error", s.error]]),
  ];
  return lines.map(([k, v]) => `${(k ?? "").padEnd(9)}${v ?? ""}\n`).join("");
}

/** Connect code as it appears on the wire, e.g. `deadline_exceeded`. */
export function codeName(code: Code): string {
  const name = Code[code] ?? `code_${code}`;
  return name.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

function describeFsError(e: unknown): string {
  if (typeof e === "object" && e !== null && "code" in e) {
    const code = (e as { code: unknown }).code;
    if (code === "ENOENT") return "no such file";
    if (code === "EACCES" || code === "EPERM") return "permission denied";
    if (code === "EISDIR") return "is a directory";
  }
  return e instanceof Error ? (e.message.split("\n")[0] ?? "") : String(e);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}

/** Prints one `error: ...` line for `e` and returns the exit code. */
function reportError(e: unknown, deps: CliDeps): number {
  if (e instanceof InputError || e instanceof InvalidMatrixError) {
    deps.stderr.write(`error: ${oneLine(e.message)}\n`);
    return EXIT_USAGE;
  }
  if (e instanceof JobError) {
    deps.stderr.write(`error: ${oneLine(e.message)}\n`);
    return EXIT_FAILURE;
  }
  if (e instanceof ConnectError) {
    deps.stderr.write(`error: ${codeName(e.code)}: ${oneLine(e.rawMessage)}\n`);
    return EXIT_FAILURE;
  }
  const message = e instanceof Error ? e.message : String(e);
  deps.stderr.write(`error: internal: ${oneLine(message)}\n`);
  return EXIT_FAILURE;
}
