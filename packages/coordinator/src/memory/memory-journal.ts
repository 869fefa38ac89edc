import { applyRecord, createDurableModel, type DurableModel, type DurableRecord } from "@dce/core";
import type { JournalPort, OpenedJournal } from "../ports/storage.js";

/**
 * A journal held in memory, for tests and the simulation. Records are kept as the JSON
 * the disk journal would write, so nothing a coordinator holds aliases them.
 *
 * Each {@link open} starts a run (a coordinator starting) and returns that run's
 * {@link JournalPort}: its model is rebuilt from what earlier runs committed, and what the
 * previous run appended but did not commit is gone (a crash). The previous run is fenced
 * off: its later appends are dropped and its commits rejected, so a coordinator left
 * running after a simulated crash cannot write into its successor's journal.
 *
 * Commits resolve on a later microtask, in order, unless {@link hold} holds them: then
 * they wait for {@link release}, which models a slow fsync. {@link failCommits} makes the
 * next commit fail like a full disk, and every later one of that run.
 */
export class MemoryJournal {
  readonly #committed: string[] = [];
  #run = 0;
  #held: (() => void)[] | undefined;
  #failNext: Error | undefined;

  /** Opens the journal for a new run; see the class comment. */
  open(): Promise<OpenedJournal> {
    const run = ++this.#run;
    const model = createDurableModel();
    for (const text of this.#committed) applyRecord(model, JSON.parse(text) as DurableRecord);
    const report = { snapshotSeq: 0, segments: 1, records: this.#committed.length, truncatedBytes: 0, ms: 0 };
    return Promise.resolve({ journal: this.#startRun(run, model), report });
  }

  /** Every committed record, oldest first (copies). */
  get records(): DurableRecord[] {
    return this.#committed.map((text) => JSON.parse(text) as DurableRecord);
  }

  /** Holds commits that have not completed yet, and those to come, until {@link release}. */
  hold(): void {
    this.#held ??= [];
  }

  /** Lets held commits (and later ones) complete, in order. */
  release(): void {
    const held = this.#held ?? [];
    this.#held = undefined;
    for (const go of held) go();
  }

  /** Makes the next commit fail with `error` (as a full disk would), and every later commit of its run. */
  failCommits(error: Error): void {
    this.#failNext = error;
  }

  #startRun(run: number, model: DurableModel): JournalPort {
    let pending: string[] = [];
    let last: Promise<void> = Promise.resolve();
    let failed: Error | undefined;
    let closed = false;
    const current = () => run === this.#run;
    const commit = (): Promise<void> => {
      if (failed) return Promise.reject(failed);
      if (!current()) return Promise.reject(new Error("the journal was opened again: this run can no longer commit"));
      if (pending.length === 0) return last;
      const batch = pending;
      pending = [];
      last = last
        .then(() => this.#gate())
        .then(() => {
          if (!current()) throw new Error("the journal was opened again: this commit of the previous run is lost");
          if (this.#failNext) {
            failed = this.#failNext;
            this.#failNext = undefined;
          }
          if (failed) throw failed;
          this.#committed.push(...batch);
        });
      return last;
    };
    return {
      model,
      append(record) {
        if (closed) throw new Error("journal is closed");
        applyRecord(model, record);
        if (current()) pending.push(JSON.stringify(record));
      },
      commit,
      async close() {
        if (closed) return;
        try {
          await commit();
        } finally {
          closed = true;
        }
      },
    };
  }

  #gate(): Promise<void> | undefined {
    const held = this.#held;
    if (held === undefined) return undefined;
    return new Promise((resolve) => held.push(resolve));
  }
}
