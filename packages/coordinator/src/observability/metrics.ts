import type { Interceptor } from "@connectrpc/connect";
import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";
import { createRpcMetrics } from "./rpc-metrics.js";
import type { ObservableCoordinator } from "./source.js";
import { registerStateGauges } from "./state-gauges.js";
import { createStepMetrics } from "./step-metrics.js";
import { registerStorageMetrics } from "./storage-metrics.js";

export { codeLabel } from "./rpc-metrics.js";
export { type LeaseEndReason, type RejectionReason, rejectionReason } from "./step-metrics.js";

/** Options of {@link createCoordinatorMetrics}. */
export interface CoordinatorMetricsOptions {
  /** Also export the Node process metrics (`process_*`, `nodejs_*`) of prom-client. Default true. */
  processMetrics?: boolean;
}

/**
 * Called by the durable journal after each write (a group commit): how long it took,
 * in ms, and how many records it made durable (optional).
 */
export type JournalWriteObserver = (ms: number, records?: number) => void;

/**
 * The Prometheus metrics of one coordinator, in a registry of its own (never the
 * global one), so several coordinators can run in one process.
 *
 * Job, shard, lease and worker metrics are derived from the coordinator's step hook
 * and, at scrape time, from its read-only core state: see {@link CoordinatorMetrics.attach}.
 * RPC metrics come from {@link CoordinatorMetrics.interceptor}. The metric names are
 * listed in `docs/operations.md`.
 */
export interface CoordinatorMetrics {
  /** The registry holding every metric of this coordinator. */
  readonly registry: Registry;
  /** Content type of {@link CoordinatorMetrics.scrape}'s text (Prometheus text format 0.0.4). */
  readonly contentType: string;
  /** Renders every metric in the Prometheus text exposition format. */
  scrape(): Promise<string>;
  /**
   * Starts deriving metrics from `source` (a {@link Coordinator}): registers a step
   * observer and reads `source.state` at scrape time. One source at a time; attaching
   * again replaces the previous one. Jobs that already exist are taken as a baseline
   * and are not counted again (for a coordinator restored from its journal).
   * @returns a function that detaches (idempotent).
   */
  attach(source: ObservableCoordinator): () => void;
  /**
   * Records one journal write: its duration in ms into the `dce_journal_write_seconds`
   * histogram and, when given, its record count into `dce_journal_records_total`.
   * A bound function: pass it as a callback, e.g. `{ onJournalCommit: metrics.observeJournalWriteMs }`.
   * Negative or non-finite values are ignored.
   */
  readonly observeJournalWriteMs: JournalWriteObserver;
  /**
   * A Connect server interceptor counting RPCs and timing them by service, method and
   * code, and counting the data bytes of `UploadChunk` (in) and `ReadBlob` (out). Put
   * it before the others (only the error boundary, which keeps codes, goes first) so
   * it sees the final code of every call.
   */
  readonly interceptor: Interceptor;
}

const JOURNAL_BUCKETS_S = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/**
 * Creates the metrics of one coordinator. Nothing is observed until
 * {@link CoordinatorMetrics.attach}; the RPC interceptor works from the start.
 */
export function createCoordinatorMetrics(options: CoordinatorMetricsOptions = {}): CoordinatorMetrics {
  const registry = new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  let source: ObservableCoordinator | undefined;
  let detach: (() => void) | undefined;
  const state = () => source?.state;
  const registers = [registry];

  // Registration order is the scrape's order: state gauges, step counters, RPCs, storage, journal.
  registerStateGauges(registers, state);
  const steps = createStepMetrics(registers, state);
  const interceptor = createRpcMetrics(registers);
  registerStorageMetrics(registers, () => source?.gc?.stats());

  const journalSeconds = new Histogram({
    name: "dce_journal_write_seconds",
    help: "Duration of one journal write (append + flush), in seconds.",
    buckets: JOURNAL_BUCKETS_S,
    registers,
  });
  const journalRecords = new Counter({
    name: "dce_journal_records_total",
    help: "Records made durable by journal writes.",
    registers,
  });

  return {
    registry,
    contentType: registry.contentType,
    scrape: () => registry.metrics(),
    attach(s) {
      detach?.();
      source = s;
      steps.baseline(s.state);
      const unobserveSteps = s.observe(steps.onStep);
      const unobserveChecks = s.observeVerification?.(steps.onVerification) ?? (() => {});
      const unobserve = () => {
        unobserveSteps();
        unobserveChecks();
      };
      let done = false;
      const off = () => {
        if (done) return;
        done = true;
        unobserve();
        if (source === s) source = undefined;
        if (detach === off) detach = undefined;
      };
      detach = off;
      return off;
    },
    observeJournalWriteMs: (ms, records) => {
      if (Number.isFinite(ms) && ms >= 0) journalSeconds.observe(ms / 1000);
      if (records !== undefined && Number.isFinite(records) && records > 0) journalRecords.inc(records);
    },
    interceptor,
  };
}
