import type { CoreEvent, CoreState, OutcomeMap, StepResult } from "@dce/core";
import type { Logger } from "pino";
import type { CoordinatorConfig } from "../config.js";
import type { Clock } from "../ports/clock.js";
import type { BlobStorePort, FreeSpacePort, ResultSinkPort } from "../ports/storage.js";
import type { StagedTiles } from "../staged-tiles.js";
import type { PanelHashes } from "./panel-hashes.js";
import type { ResultVerification } from "./result-verification.js";
import type { Waiters } from "./waiters.js";
import type { WorkerIdentities } from "./worker-identity.js";

/** One core step as the shell ran it: the core's result, and when its records are durable. */
export type Applied<E extends CoreEvent> = StepResult<OutcomeMap[E["type"]]> & { durable: Promise<void> };

/**
 * What the Connect services reach of the coordinator shell: its settings and ports, the
 * core state (read-only), and the one way to change it, {@link ShellContext.apply}.
 */
export interface ShellContext {
  readonly config: CoordinatorConfig;
  readonly log: Logger;
  readonly clock: Clock;
  /** The core state; read it, never mutate it (only core steps do). */
  readonly state: Readonly<CoreState>;
  readonly blobs: BlobStorePort;
  readonly sink: ResultSinkPort;
  readonly waiters: Waiters;
  readonly identities: WorkerIdentities;
  readonly verification: ResultVerification;
  /** SHA-256 of the input panels of leases that name peers. */
  readonly panelHashes: PanelHashes;
  /** Largest data payload per chunk, in bytes. */
  readonly maxChunkBytes: number;
  /**
   * Feeds one event to the core and carries out its effects. Handlers await `durable`
   * before replying, so nobody observes a state that a crash could take back.
   */
  apply<E extends CoreEvent>(event: E, tile?: Uint8Array): Applied<E>;
  /** Makes sure the next `count` epochs are covered by a durable reservation. */
  reserveEpochs(count: number): Promise<void>;
  /** True when every record journaled so far is durable (nothing pending, no commit in flight). */
  journalSettled(): boolean;
  /**
   * Resolves once every record journaled so far is durable: a read that answers from the
   * core state awaits it, so nobody observes a state that a crash could take back.
   * @throws ConnectError UNAVAILABLE (`JOURNAL_FAILED`) when the journal failed.
   */
  settle(): Promise<void>;
  /** A fresh id for a job or a worker. */
  newId(): string;
  /** A uniform number in [0, 1) (the core's jitter). */
  random(): number;
  /** Free space of the data dir and its watermark; undefined on memory storage. */
  readonly space: FreeSpacePort | undefined;
  /** Result tiles workers staged in the local store; undefined when the local store is off or on memory storage. */
  readonly stagedTiles: StagedTiles | undefined;
}

/** The blob store as peers on this host may reach it, as a response field, when offered. */
export function localStoreField(ctx: ShellContext): { localStore?: { dir: string; storeId: string } } {
  return ctx.config.localStore ? { localStore: { dir: ctx.blobs.dir, storeId: ctx.blobs.storeId } } : {};
}
