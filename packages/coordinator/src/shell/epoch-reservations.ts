import type { CoreState } from "@dce/core";
import type { JournalPort } from "../ports/storage.js";

/** How many epochs one `epochs-reserved` record covers beyond what a grant needs. */
const RESERVE_AHEAD = 100_000;

/**
 * Epochs never go backwards, even across a crash: before the core grants leases, the
 * epochs it may hand out are covered by a durable `epochs-reserved` record. One record
 * covers many grants, so most grants only wait for the reservation already in flight.
 */
export class EpochReservations {
  readonly #journal: JournalPort;
  readonly #state: Readonly<CoreState>;
  readonly #failed: (e: unknown) => never;
  /** Epochs below this are covered by a durable `epochs-reserved` record. */
  #reservedUpTo: number;

  /** @param failed called when the journal cannot be written; it throws the error the caller gets. */
  constructor(journal: JournalPort, state: Readonly<CoreState>, failed: (e: unknown) => never) {
    this.#journal = journal;
    this.#state = state;
    this.#failed = failed;
    this.#reservedUpTo = state.nextEpoch;
  }

  /** Resolves once the next `count` epochs are covered by a durable reservation. */
  async reserve(count: number): Promise<void> {
    if (this.#state.nextEpoch + count <= this.#reservedUpTo) {
      // Covered, but the reservation may still be on its way to disk: wait for it.
      await this.#journal.commit().catch((e: unknown) => this.#failed(e));
      return;
    }
    const upTo = this.#state.nextEpoch + count + RESERVE_AHEAD;
    this.#reservedUpTo = upTo;
    this.#journal.append({ type: "epochs-reserved", upTo });
    await this.#journal.commit().catch((e: unknown) => this.#failed(e));
  }
}
