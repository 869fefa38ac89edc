/** Faults a worker can inject into its own shards (`worker --chaos-*`). */
export interface ChaosOptions {
  /** Probability of dying abruptly mid-shard, after computing and before reporting. */
  readonly crashRate?: number;
  /** A random delay of up to this many ms before each report. */
  readonly delayMs?: number;
  /** Probability of losing a completion (the report is never sent; the lease expires). */
  readonly dropRate?: number;
  /**
   * Probability of returning a wrong result: one entry of the tile is corrupted (a high
   * exponent or mantissa bit flipped, or scaled by 1 ± 2^-9…2^-8; see `internal/corrupt.ts`)
   * before it is reported. The coordinator's verification must catch every one.
   */
  readonly corruptRate?: number;
  /** Die, like `crashRate`, whenever the shard with this index (of any job) is run: a poison shard. */
  readonly crashOnShard?: number;
  /** How to die; the CLI passes an immediate SIGKILL of its own process. */
  readonly crash: () => void;
}
