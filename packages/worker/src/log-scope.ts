import { AsyncLocalStorage } from "node:async_hooks";

/**
 * Where the worker writes its structured logs. A pino `Logger` fits as it is; so does
 * anything with these four methods. Every call passes a fields object, then a message.
 */
export interface WorkerLogger {
  debug(fields: Record<string, unknown>, msg: string): void;
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

/** A logger that discards everything: the default. */
export const silentLogger: WorkerLogger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * The job and shard the current async flow works on. Each shard runs inside it, so every
 * line logged on its behalf, down to a retried ReadBlob, carries `jobId` and `shard`
 * (pinned by test/integration/logs.test.ts). Work for the worker as a whole (registering,
 * stopping, a batch of reports) leaves it with `exit`.
 */
export const shardScope = new AsyncLocalStorage<Record<string, unknown>>();

/** `log`, with the fields of the current {@link shardScope} added to every line. */
export function scopedLogger(log: WorkerLogger): WorkerLogger {
  const at =
    (level: keyof WorkerLogger) =>
    (fields: Record<string, unknown>, msg: string): void => {
      const scope = shardScope.getStore();
      log[level](scope === undefined ? fields : { ...scope, ...fields }, msg);
    };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}
