/**
 * Argument parsing of the `dce` CLI. Pure: it reads only its parameters,
 * never exits and never writes to a stream, so every case is unit-tested.
 *
 * @packageDocumentation
 */
import { Command, CommanderError } from "commander";
import type { TileSize } from "./client.js";

/** Coordinator to talk to, resolved from flags, then env, then defaults. */
export interface ConnectionConfig {
  /** Coordinator URL (`--coordinator`, env `DCE_COORDINATOR`). */
  readonly baseUrl: string;
  /** PEM file of the coordinator's CA (`--ca`, env `DCE_CA`). */
  readonly caPath?: string;
  /** Bearer token (`--token`, env `DCE_TOKEN`); the env is safer (argv is visible to other local users). */
  readonly token?: string;
  /** Timeout of each RPC in milliseconds (`--timeout-ms`, env `DCE_TIMEOUT_MS`). */
  readonly timeoutMs: number;
  /** Largest message sent or read (`--max-message-bytes`, env `DCE_MAX_MESSAGE_BYTES`); the SDK default if unset. */
  readonly maxMessageBytes?: number;
  /** `--local-store auto|off` (env `DCE_LOCAL_STORE`): move matrix bytes through the coordinator's files when it offers them; default auto. */
  readonly localStore: "auto" | "off";
}

/** Fields every command has. */
export interface CommandBase {
  /** Coordinator to talk to. */
  readonly connection: ConnectionConfig;
  /** Print JSON instead of text (`--json`). */
  readonly json: boolean;
}

/** `dce submit A.npy B.npy`: upload, submit, and (unless `wait` is false) fetch C. */
export interface SubmitCommand extends CommandBase {
  readonly kind: "submit";
  /** Path of A. */
  readonly aPath: string;
  /** Path of B. */
  readonly bPath: string;
  /** Where to write C; present exactly when `wait` is true. */
  readonly outputPath?: string;
  /** Whether to wait for the job and write C. */
  readonly wait: boolean;
  /** Output tile shape (`--tile`); absent: the coordinator's default. */
  readonly tileSize?: TileSize;
  /** Kernel name (`--kernel`); absent: auto. */
  readonly kernel?: string;
  /** Idempotency key (`--idempotency-key`). */
  readonly idempotencyKey?: string;
  /** Priority among this client's jobs (`--priority`, -100..100); absent: 0. */
  readonly priority?: number;
}

/** `dce status ID`: print one status snapshot. */
export interface StatusCommand extends CommandBase {
  readonly kind: "status";
  /** The job. */
  readonly jobId: string;
}

/** `dce result ID -o C.npy`: wait for the job and write C. */
export interface ResultCommand extends CommandBase {
  readonly kind: "result";
  /** The job. */
  readonly jobId: string;
  /** Where to write C (`-o`). */
  readonly outputPath: string;
}

/** `dce cancel ID`: cancel a job. */
export interface CancelCommand extends CommandBase {
  readonly kind: "cancel";
  /** The job. */
  readonly jobId: string;
  /** Why (`--reason`). */
  readonly reason?: string;
}

/** `dce watch ID`: print progress until the job ends. */
export interface WatchCommand extends CommandBase {
  readonly kind: "watch";
  /** The job. */
  readonly jobId: string;
}

/** Every command the CLI runs. */
export type CliCommand = SubmitCommand | StatusCommand | ResultCommand | CancelCommand | WatchCommand;

/**
 * Outcome of {@link parseArgs}. When `ok` is false, print `usage`: to stdout
 * and exit 0 for `--help`/`--version`, to stderr and exit 2 otherwise.
 */
export type ParseResult =
  | { readonly ok: true; readonly command: CliCommand }
  | { readonly ok: false; readonly usage: string; readonly exitCode: 0 | 2 };

/** Environment variables the CLI reads. */
export type CliEnv = Readonly<Record<string, string | undefined>>;

/** Defaults of the connection flags. */
export const DEFAULT_COORDINATOR = "https://127.0.0.1:7070";
/** Default `--timeout-ms`. */
export const DEFAULT_TIMEOUT_MS = 30_000;

const MAX_IDEMPOTENCY_KEY_LENGTH = 128;
const MAX_UINT32 = 2 ** 32 - 1;

/** A usage problem found after commander accepted the syntax. */
class UsageError extends Error {}

/**
 * Parses `dce` arguments.
 *
 * @param argv - Arguments after the program name (`process.argv.slice(2)`).
 * @param env - Environment; `DCE_COORDINATOR`, `DCE_CA`, `DCE_TOKEN` and `DCE_TIMEOUT_MS`
 *   are used when the matching flag is absent (the flag wins).
 * @param info - `version` printed by `--version`.
 * @returns The command to run, or the text to print and the exit code.
 */
export function parseArgs(
  argv: readonly string[],
  env: CliEnv,
  info: { readonly version: string } = { version: "0.0.0" },
): ParseResult {
  let out = "";
  let err = "";
  let command: CliCommand | undefined;
  let problem: string | undefined;

  const program = new Command("dce");
  // Output and exit are captured so parsing stays pure; settings made before
  // .command() are inherited by the subcommands.
  program
    .exitOverride()
    .configureOutput({
      writeOut: (s) => {
        out += s;
      },
      writeErr: (s) => {
        err += s;
      },
      getOutHelpWidth: () => 80,
      getErrHelpWidth: () => 80,
      getOutHasColors: () => false,
      getErrHasColors: () => false,
    })
    .description("Submit, follow, fetch and cancel dce matrix-multiplication jobs.")
    .version(info.version, "-V, --version", "print the version")
    .helpOption("-h, --help", "show help")
    .addHelpText("after", "\nExit codes: 0 ok, 1 job failed or cancelled or RPC error, 2 usage or input problem.");

  // Runs `build` on the parsed command; a thrown UsageError becomes a usage result.
  const capture = (build: () => CliCommand) => () => {
    try {
      command = build();
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      problem = e.message;
    }
  };

  const submit = withCommon(program.command("submit"))
    .description("multiply A x B; print the job id, then wait and write C")
    .argument("<A.npy>", "left matrix")
    .argument("<B.npy>", "right matrix")
    .option("-o, --output <file>", "write C here (required unless --no-wait)")
    .option("--tile <N|RxC>", "output tile shape, e.g. 256 or 128x512 (default: coordinator's)")
    .option("--kernel <name>", "kernel to run (default: auto)")
    .option("--idempotency-key <key>", "retrying with the same key returns the same job")
    .option("--priority <N>", "-100 to 100: among your jobs, higher runs first (default 0)")
    .option("--no-wait", "print the job id and exit without waiting");
  submit.action(
    capture(() => {
      const o = submit.opts();
      const [aPath, bPath] = submit.args;
      const wait = o["wait"] !== false;
      const outputPath = optString(o, "output");
      if (wait && outputPath === undefined) {
        throw new UsageError("submit: -o/--output is required unless --no-wait is given");
      }
      if (!wait && outputPath !== undefined) {
        throw new UsageError("submit: -o/--output cannot be combined with --no-wait");
      }
      const tile = optString(o, "tile");
      const kernel = optString(o, "kernel");
      const idempotencyKey = optString(o, "idempotencyKey");
      const priority = optString(o, "priority");
      if (priority !== undefined && (!/^[+-]?\d{1,3}$/.test(priority.trim()) || Math.abs(Number(priority)) > 100)) {
        throw new UsageError(`--priority must be an integer from -100 to 100, got '${priority}'`);
      }
      if (kernel === "") throw new UsageError("--kernel must not be empty");
      if (idempotencyKey !== undefined && (idempotencyKey === "" || idempotencyKey.length > MAX_IDEMPOTENCY_KEY_LENGTH)) {
        throw new UsageError(`--idempotency-key must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`);
      }
      return {
        kind: "submit",
        connection: resolveConnection(o, env),
        json: o["json"] === true,
        aPath: aPath ?? "",
        bPath: bPath ?? "",
        wait,
        ...(outputPath === undefined ? {} : { outputPath }),
        ...(tile === undefined ? {} : { tileSize: parseTile(tile) }),
        ...(kernel === undefined ? {} : { kernel }),
        ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
        ...(priority === undefined ? {} : { priority: Number(priority) }),
      };
    }),
  );

  const status = withCommon(program.command("status")).description("print a job's status").argument("<ID>", "job id");
  status.action(
    capture(() => ({
      kind: "status",
      connection: resolveConnection(status.opts(), env),
      json: status.opts()["json"] === true,
      jobId: jobIdArg(status.args),
    })),
  );

  const result = withCommon(program.command("result"))
    .description("wait for a job and write its result C")
    .argument("<ID>", "job id")
    .requiredOption("-o, --output <file>", "write C here");
  result.action(
    capture(() => ({
      kind: "result",
      connection: resolveConnection(result.opts(), env),
      json: result.opts()["json"] === true,
      jobId: jobIdArg(result.args),
      outputPath: optString(result.opts(), "output") ?? "",
    })),
  );

  const cancel = withCommon(program.command("cancel"))
    .description("cancel a job")
    .argument("<ID>", "job id")
    .option("--reason <text>", "why; reported as the job's error");
  cancel.action(
    capture(() => {
      const reason = optString(cancel.opts(), "reason");
      return {
        kind: "cancel",
        connection: resolveConnection(cancel.opts(), env),
        json: cancel.opts()["json"] === true,
        jobId: jobIdArg(cancel.args),
        ...(reason === undefined ? {} : { reason }),
      };
    }),
  );

  const watch = withCommon(program.command("watch"))
    .description("print a job's progress until it ends")
    .argument("<ID>", "job id");
  watch.action(
    capture(() => ({
      kind: "watch",
      connection: resolveConnection(watch.opts(), env),
      json: watch.opts()["json"] === true,
      jobId: jobIdArg(watch.args),
    })),
  );

  try {
    program.parse([...argv], { from: "user" });
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    if (e.exitCode === 0) return { ok: false, usage: out, exitCode: 0 };
    // Help shown because no command was given: print it as the usage text.
    const text = e.code === "commander.help" ? err || out : `${err.trimEnd()}\n${hint(argv)}\n`;
    return { ok: false, usage: text, exitCode: 2 };
  }
  if (problem !== undefined) {
    return { ok: false, usage: `error: ${problem}\n${hint(argv)}\n`, exitCode: 2 };
  }
  if (command === undefined) {
    // Unreachable with commander's own checks; kept so a bug is a usage error, not a crash.
    return { ok: false, usage: `error: no command given\n${hint([])}\n`, exitCode: 2 };
  }
  return { ok: true, command };
}

/** Adds the options every subcommand takes. */
function withCommon(cmd: Command): Command {
  return cmd
    .option("--coordinator <url>", `coordinator URL (env DCE_COORDINATOR; default ${DEFAULT_COORDINATOR})`)
    .option("--ca <file>", "PEM of the CA that signed the coordinator certificate (env DCE_CA)")
    .option("--token <token>", "bearer token from `coordinator tokens add` (env DCE_TOKEN, preferred: argv is visible to ps)")
    .option("--timeout-ms <ms>", `timeout of each RPC in ms (env DCE_TIMEOUT_MS; default ${DEFAULT_TIMEOUT_MS})`)
    .option("--max-message-bytes <n>", "largest RPC message sent or read (env DCE_MAX_MESSAGE_BYTES; default 4194304)")
    .option(
      "--local-store <mode>",
      "auto|off: on the coordinator's host, write uploads and read C through its files instead of RPCs (env DCE_LOCAL_STORE; default auto)",
    )
    .option("--json", "print JSON instead of text");
}

function hint(argv: readonly string[]): string {
  const sub = argv.find((a) => ["submit", "status", "result", "cancel", "watch"].includes(a));
  return `run 'dce ${sub === undefined ? "" : `${sub} `}--help' for usage`;
}

function optString(opts: Record<string, unknown>, key: string): string | undefined {
  const v = opts[key];
  return typeof v === "string" ? v : undefined;
}

function jobIdArg(args: readonly string[]): string {
  const id = args[0] ?? "";
  if (id.trim() === "") throw new UsageError("job id must not be empty");
  return id;
}

function resolveConnection(opts: Record<string, unknown>, env: CliEnv): ConnectionConfig {
  const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === "" ? undefined : v);
  const baseUrl = optString(opts, "coordinator") ?? nonEmpty(env["DCE_COORDINATOR"]) ?? DEFAULT_COORDINATOR;
  const caPath = optString(opts, "ca") ?? nonEmpty(env["DCE_CA"]);
  const token = optString(opts, "token") ?? nonEmpty(env["DCE_TOKEN"]);
  if (token !== undefined && !/^[\x21-\x7e]{1,256}$/.test(token)) {
    // Never echo the token itself: it may be a real one with a typo.
    throw new UsageError("--token/DCE_TOKEN must be 1 to 256 printable ASCII characters without spaces");
  }
  const timeoutFlag = optString(opts, "timeoutMs");
  const timeoutEnv = nonEmpty(env["DCE_TIMEOUT_MS"]);
  const timeoutMs =
    timeoutFlag !== undefined
      ? parseTimeout(timeoutFlag, "--timeout-ms")
      : timeoutEnv !== undefined
        ? parseTimeout(timeoutEnv, "DCE_TIMEOUT_MS")
        : DEFAULT_TIMEOUT_MS;

  const maxFlag = optString(opts, "maxMessageBytes");
  const maxEnv = nonEmpty(env["DCE_MAX_MESSAGE_BYTES"]);
  const maxMessageBytes =
    maxFlag !== undefined
      ? parseMessageBytes(maxFlag, "--max-message-bytes")
      : maxEnv !== undefined
        ? parseMessageBytes(maxEnv, "DCE_MAX_MESSAGE_BYTES")
        : undefined;

  const localStore = optString(opts, "localStore") ?? nonEmpty(env["DCE_LOCAL_STORE"]) ?? "auto";
  if (localStore !== "auto" && localStore !== "off") {
    throw new UsageError(`--local-store/DCE_LOCAL_STORE must be auto or off, got ${JSON.stringify(localStore)}`);
  }

  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new UsageError(`coordinator ${JSON.stringify(baseUrl)} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new UsageError(`coordinator URL must start with https:// or http://, got ${JSON.stringify(baseUrl)}`);
  }
  if (caPath !== undefined && url.protocol !== "https:") {
    throw new UsageError(`--ca/DCE_CA needs an https:// coordinator, got ${JSON.stringify(baseUrl)}`);
  }
  return {
    baseUrl,
    timeoutMs,
    localStore,
    ...(caPath === undefined ? {} : { caPath }),
    ...(token === undefined ? {} : { token }),
    ...(maxMessageBytes === undefined ? {} : { maxMessageBytes }),
  };
}

/** The SDK needs room for 64 KiB of framing next to each data chunk. */
function parseMessageBytes(text: string, source: string): number {
  if (!/^[0-9]+$/.test(text) || Number(text) <= 65_536 || Number(text) > MAX_UINT32) {
    throw new UsageError(`${source} must be an integer of bytes above 65536, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

function parseTimeout(text: string, source: string): number {
  if (!/^[0-9]+$/.test(text) || Number(text) < 1 || Number(text) > MAX_UINT32) {
    throw new UsageError(`${source} must be a positive integer of milliseconds, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

/** Parses `--tile`: `N` for a square tile or `RxC`. */
function parseTile(text: string): TileSize {
  const match = /^([0-9]+)(?:[xX]([0-9]+))?$/.exec(text);
  const rows = match === null ? Number.NaN : Number(match[1]);
  const cols = match === null ? Number.NaN : Number(match[2] ?? match[1]);
  const ok = (n: number): boolean => Number.isInteger(n) && n >= 1 && n <= MAX_UINT32;
  if (!ok(rows) || !ok(cols)) {
    throw new UsageError(`--tile must be N or RxC with positive integers, got ${JSON.stringify(text)}`);
  }
  return { rows, cols };
}
