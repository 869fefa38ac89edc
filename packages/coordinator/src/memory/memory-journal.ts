import { applyRecord, createDurableModel, type DurableModel, type DurableRecord, fromSnapshot, toSnapshot } from "@dce/core";
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
 * next commit fail like a full disk, and every later one of that run. {@link crash} ends
 * the current run at once, as a killed process (optionally mid-fsync, keeping a prefix of
 * the records on their way to disk: a torn tail).
 */
export class MemoryJournal {
  readonly #committed: string[] = [];
  #run = 0;
  #held: (() => void)[] | undefined;
  #failNext: Error | undefined;
  /** Batches of the current run committed but not durable yet, oldest first. */
  #inFlight: string[][] = [];
  readonly #commitObservers = new Set<(records: readonly DurableRecord[]) => void>();

  /**
   * Opens the journal for a new run; see the class comment.
   * @param options.snapshotAfter rebuild the model through a JSON snapshot of the first
   *   `snapshotAfter` committed records, then the rest (as the disk journal restores a
   *   snapshot and the segments after it).
   */
  open(options: { snapshotAfter?: number } = {}): Promise<OpenedJournal> {
    const run = ++this.#run;
    this.#inFlight = [];
    let model = createDurableModel();
    const records = this.#committed.map((text) => JSON.parse(text) as DurableRecord);
    let from = 0;
    const cut = options.snapshotAfter;
    if (cut !== undefined) {
      from = Math.max(0, Math.min(cut, records.length));
      for (const r of records.slice(0, from)) applyRecord(model, r);
      model = fromSnapshot(JSON.parse(JSON.stringify(toSnapshot(model))));
    }
    for (const r of records.slice(from)) applyRecord(model, r);
    const report = { snapshotSeq: from, segments: 1, records: this.#committed.length, truncatedBytes: 0, ms: 0 };
    return Promise.resolve({ journal: this.#startRun(run, model), report });
  }

  /**
   * Ends the current run now, like a killed process: what it appended and has not made
   * durable is lost, except the first `keepRecords` of the records already on their way
   * to disk (a crash mid-fsync that leaves a torn tail, which recovery truncates). The
   * run's later appends are dropped and its commits rejected.
   * @returns how many records were on their way to disk.
   */
  crash(keepRecords = 0): number {
    const flying = this.#inFlight.flat();
    const kept = flying.slice(0, Math.max(0, keepRecords));
    this.#run++;
    this.#inFlight = [];
    if (kept.length > 0) this.#durable(kept);
    return flying.length;
  }

  /** Calls `observer` with every batch of records as it becomes durable; returns a function that removes it. */
  observeCommits(observer: (records: readonly DurableRecord[]) => void): () => void {
    this.#commitObservers.add(observer);
    return () => this.#commitObservers.delete(observer);
  }

  /** Records of the current run committed but not durable yet. */
  get recordsInFlight(): number {
    let n = 0;
    for (const batch of this.#inFlight) n += batch.length;
    return n;
  }

  /** How many records are durable. */
  get committedCount(): number {
    return this.#committed.length;
  }

  /** Commits waiting for {@link release}. */
  get heldCommits(): number {
    return this.#held?.length ?? 0;
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
    let inFlight = 0;
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
      this.#inFlight.push(batch);
      inFlight++;
      last = last
        .then(() => this.#gate())
        .then(() => {
          if (!current()) throw new Error("the journal was opened again: this commit of the previous run is lost");
          if (this.#failNext) {
            failed = this.#failNext;
            this.#failNext = undefined;
          }
          if (failed) throw failed;
          const i = this.#inFlight.indexOf(batch);
          if (i >= 0) this.#inFlight.splice(i, 1);
          this.#durable(batch);
        });
      const done = () => {
        inFlight--;
      };
      last.then(done, done);
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
      get settled() {
        return pending.length === 0 && inFlight === 0 && failed === undefined;
      },
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

  #durable(batch: readonly string[]): void {
    this.#committed.push(...batch);
    if (this.#commitObservers.size === 0) return;
    const records = batch.map((text) => JSON.parse(text) as DurableRecord);
    for (const observer of this.#commitObservers) observer(records);
  }

  #gate(): Promise<void> | undefined {
    const held = this.#held;
    if (held === undefined) return undefined;
    return new Promise((resolve) => held.push(resolve));
  }
}
