import type { CoreState } from "@dce/core";
import type { StorageStats } from "../shell/blob-gc.js";
import type { StepObserver, VerificationObserver } from "./events.js";

/**
 * What the observability features read from a coordinator: its step hook and its
 * read-only core state. {@link Coordinator} satisfies it; unit tests pass the real one,
 * in memory on a virtual clock (`test-support/scenario.ts`).
 */
export interface ObservableCoordinator {
  /** Registers an observer called after every core step; returns the function that removes it. */
  observe(observer: StepObserver): () => void;
  /** The live core state. Read only: never mutate it. */
  readonly state: Readonly<CoreState>;
  /** Registers an observer of result checks (absent on sources that do not verify); returns its remover. */
  observeVerification?(observer: VerificationObserver): () => void;
  /** The blob collector, for the store's size, the data dir's free space and its counts (absent on sources without storage). */
  readonly gc?: { stats(): StorageStats };
}
