/**
 * The logger of every dce process (`@dce/runtime/logging`, Node.js only): the coordinator
 * and the worker write the same lines, with the same redaction.
 *
 * @packageDocumentation
 */
import { type DestinationStream, type Logger, pino } from "pino";
import pinoPretty from "pino-pretty";

/** How log lines are written: one JSON object per line, or pretty lines for people. */
export type LogFormat = "json" | "pretty";

/** What `--log-format` accepts: a {@link LogFormat}, or `auto` (pretty on a terminal, JSON otherwise). */
export const LOG_FORMATS = ["auto", "json", "pretty"] as const;

/** Levels `--log-level` accepts (pino's). */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/**
 * Field paths whose values never reach a log line, whatever the level: credentials
 * (bearer tokens, authorization and cookie headers, keys, passwords). A value at one
 * of these paths is written as `[redacted]`. Paths are pino redact paths: `*.x` is
 * the field `x` of any top-level object.
 */
export const REDACTED_LOG_PATHS: readonly string[] = [
  "authorization",
  "cookie",
  "token",
  "accessToken",
  "bearerToken",
  "apiKey",
  "privateKey",
  "password",
  "secret",
  "*.authorization",
  "*.cookie",
  "*.token",
  "*.accessToken",
  "*.bearerToken",
  "*.apiKey",
  "*.privateKey",
  "*.password",
  "*.secret",
  'headers["authorization"]',
  'headers["cookie"]',
  'req.headers["authorization"]',
  'req.headers["cookie"]',
  'metadata["authorization"]',
];

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Lowest level written; default `info`. */
  readonly level?: string;
  /** `auto` (default) picks `pretty` when `isTty`, `json` otherwise. */
  readonly format?: LogFormat | "auto";
  /** Whether the destination is a terminal (decides `auto`, and colours in `pretty`). */
  readonly isTty?: boolean;
  /** Fields on every line, e.g. `{ svc: "coordinator", pid }` or `{ svc: "worker", pid }`. */
  readonly base?: Record<string, unknown>;
  /** Where lines go; default file descriptor 2 (stderr). */
  readonly destination?: number | NodeJS.WritableStream;
  /** Write synchronously (every line is out before `process.exit`). Default false. */
  readonly sync?: boolean;
}

/** Resolves `auto` against whether the output is a terminal. */
export function resolveLogFormat(format: LogFormat | "auto", isTty: boolean): LogFormat {
  return format === "auto" ? (isTty ? "pretty" : "json") : format;
}

/**
 * Creates a dce process's pino logger: JSON lines (the default when the output is not
 * a terminal), or pino-pretty lines (on a terminal, or when asked). Either way the
 * {@link REDACTED_LOG_PATHS} are redacted.
 */
export function createLogger(o: LoggerOptions = {}): Logger {
  const format = resolveLogFormat(o.format ?? "auto", o.isTty ?? false);
  const destination = o.destination ?? 2;
  const sync = o.sync ?? false;
  const options = {
    level: o.level ?? "info",
    base: o.base ?? {},
    redact: { paths: [...REDACTED_LOG_PATHS], censor: "[redacted]" },
  };
  let stream: DestinationStream | NodeJS.WritableStream;
  if (format === "pretty") {
    stream = pinoPretty({
      destination,
      sync,
      colorize: o.isTty ?? false,
      translateTime: "SYS:HH:MM:ss.l",
      // Shown on every line and known to whoever reads a terminal.
      ignore: "pid,hostname,svc",
    });
  } else {
    stream = typeof destination === "number" ? pino.destination({ fd: destination, sync }) : destination;
  }
  return pino(options, stream as DestinationStream);
}
