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
  /** Epochs below this are covered by an `epochs-reserved` record, durable or on its way. */
  #reservedUpTo: number;
  /** Epochs below this are covered by a durable `epochs-reserved` record. */
  #durableUpTo: number;
  /** The commit of the latest reservation. */
  #reserving: Promise<void> = Promise.resolve();

  /** @param failed called when the journal cannot be written; it throws the error the caller gets. */
  constructor(journal: JournalPort, state: Readonly<CoreState>, failed: (e: unknown) => never) {
    this.#journal = journal;
    this.#state = state;
    this.#failed = failed;
    this.#reservedUpTo = state.nextEpoch;
    this.#durableUpTo = state.nextEpoch;
  }

  /** Resolves once the next `count` epochs are covered by a durable reservation. */
  async reserve(count: number): Promise<void> {
    const need = this.#state.nextEpoch + count;
    // Covered by a durable reservation: nothing to wait for (not even other records' commits).
    if (need <= this.#durableUpTo) return;
    if (need <= this.#reservedUpTo) {
      // Covered, but the reservation is still on its way to disk: wait for it.
      await this.#reserving;
      return;
    }
    const upTo = need + RESERVE_AHEAD;
    this.#reservedUpTo = upTo;
    this.#journal.append({ type: "epochs-reserved", upTo });
    this.#reserving = this.#journal.commit().then(
      () => {
        this.#durableUpTo = Math.max(this.#durableUpTo, upTo);
      },
      (e: unknown) => this.#failed(e),
    );
    await this.#reserving;
  }
}
