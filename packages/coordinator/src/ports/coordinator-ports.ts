import type { step } from "@dce/core";
import type { Clock } from "./clock.js";
import type { StoragePorts } from "./storage.js";

/**
 * Called once when the coordinator cannot go on (its journal could not be written: memory
 * is ahead of disk). The callers waiting on that write are answered first, with what
 * happened; the handler decides what stops. The `coordinator` bin exits with code 70
 * after 200 ms, and a restart recovers from the journal.
 */
export type FatalHandler = (err: unknown) => void;

/**
 * What a coordinator reaches the world through. Each is optional: the defaults are the
 * disk parts in `config.dataDir`, the wall clock, and a fatal handler that only logs
 * (after which every write fails until the coordinator is closed). Tests and the
 * simulation pass memory storage and a `VirtualClock` (`@dce/coordinator/testing`).
 */
export interface CoordinatorPorts {
  /** Journal, blob store and result sink. Default: files in `config.dataDir`. */
  readonly storage?: StoragePorts;
  /** Time and timers. Default: `systemClock`. */
  readonly clock?: Clock;
  /** See {@link FatalHandler}. Default: nothing besides the fatal log line. */
  readonly onFatal?: FatalHandler;
  /** Uniform numbers in [0, 1) for the core's jitter. Default `Math.random`. */
  readonly random?: () => number;
  /** Fresh ids for jobs and workers. Default `crypto.randomUUID`. */
  readonly newId?: () => string;
  /**
   * Uniform 32-bit words for the verifier's secret probes. Default the operating system's
   * CSPRNG; only tests and the simulation pass a seeded source (so a run is reproducible).
   */
  readonly verifyRandomWords?: (count: number) => Uint32Array;
  /**
   * The core's transition function. Default `step` from `@dce/core`; the simulation passes
   * a wrapped one to show that its oracle catches a broken core (test/sim).
   */
  readonly step?: typeof step;
  /**
   * Reads the data dir's free and total bytes (disk storage only); tests pass a fake to
   * exercise the `--min-free-bytes` watermark. Default statfs(2).
   */
  readonly statfs?: (dir: string) => { freeBytes: number; totalBytes: number } | undefined;
}
