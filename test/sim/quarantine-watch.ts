// Who may be quarantined in a simulated run (see packages/core/src/quarantine.ts for the
// rule). Only the corrupting slot returns wrong results. Every other slot has its own
// identity, except that in some runs the corrupter presents the identity of one honest
// slot, its twin (one certificate copied to two machines). Then:
// - no honest worker (registration) is ever quarantined, nor any identity but the
//   corrupter's;
// - the shared identity may be quarantined, and the twin refused, only on evidence from
//   two corrupting registrations (the corrupter crashed and came back) with at least K
//   rejections in all. Counted over the whole run, so the condition is necessary even
//   though the core's counts restart with each coordinator boot.
import type { CoreError, CoreState, WorkerId } from "@dce/core";

/** The corrupting slot, and the honest slot whose identity it presents (if any). */
export interface Corrupter {
  readonly slot: number;
  readonly p: number;
  readonly twin: number | undefined;
}

/** The slot a simulated worker id (`w<slot>.<registration>`) belongs to. */
export const slotOf = (workerId: WorkerId): number => Number(workerId.slice(1).split(".")[0]);

export class QuarantineWatch {
  readonly #corrupter: Corrupter | undefined;
  readonly #limit: number;
  /** Rejected results per registration of the corrupting slot, over the whole run. */
  readonly #rejected = new Map<WorkerId, number>();

  constructor(corrupter: Corrupter | undefined, limit: number) {
    this.#corrupter = corrupter;
    this.#limit = limit;
  }

  /** The identity a registration presents: its slot's, or the twin's for the corrupter. */
  identityOf(workerId: WorkerId): string {
    const slot = slotOf(workerId);
    const c = this.#corrupter;
    return `w${c !== undefined && c.slot === slot && c.twin !== undefined ? c.twin : slot}`;
  }

  /** Whether the evidence so far allows the identity the corrupter shares with its twin to be quarantined. */
  #sharedIdentityMayGo(): boolean {
    let total = 0;
    for (const n of this.#rejected.values()) total += n;
    return this.#corrupter?.twin !== undefined && this.#limit > 0 && this.#rejected.size >= 2 && total >= this.#limit;
  }

  /**
   * A result of `workerId` was rejected and the core recorded it: returns what is wrong
   * with the sender or with the quarantines in `state`, or undefined.
   */
  onRejected(workerId: WorkerId, state: Readonly<CoreState>): string | undefined {
    const c = this.#corrupter;
    if (c === undefined || slotOf(workerId) !== c.slot) return `a result of honest worker ${workerId} was rejected`;
    this.#rejected.set(workerId, (this.#rejected.get(workerId) ?? 0) + 1);
    for (const w of state.workers.values()) {
      if (w.quarantinedAtMs > 0 && slotOf(w.id) !== c.slot) return `honest worker ${w.id} was quarantined`;
    }
    const corrupterIdentity = this.identityOf(workerId);
    for (const ident of state.identities.values()) {
      for (const q of ident.quarantinedWorkers) {
        if (slotOf(q.workerId) !== c.slot) return `honest worker ${q.workerId} was quarantined`;
      }
      if (ident.quarantinedAtMs === 0) continue;
      if (ident.identity !== corrupterIdentity) return `identity ${ident.identity} of an honest worker was quarantined`;
      if (c.twin !== undefined && !this.#sharedIdentityMayGo()) {
        return `identity ${ident.identity}, shared with honest worker w${c.twin}, was quarantined on evidence from ${this.#rejected.size} corrupting registration(s)`;
      }
    }
    return undefined;
  }

  /** A worker of `slot` was refused as quarantined with `error`: returns what is wrong, or undefined. */
  onRefused(slot: number, error: CoreError): string | undefined {
    const c = this.#corrupter;
    if (c !== undefined && slot === c.slot) return undefined;
    const byIdentity = error.kind === "worker-quarantined" && error.workerId === undefined;
    if (c?.twin === slot && byIdentity && this.#sharedIdentityMayGo()) return undefined;
    return `honest worker w${slot} was refused as quarantined`;
  }
}
