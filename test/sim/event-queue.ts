/**
 * A min-heap of scheduled simulation events ordered by time, then by insertion order,
 * so two events at the same simulated millisecond always run in the order they were
 * scheduled (the run stays a pure function of its seed).
 */
export class EventQueue<T> {
  readonly #times: number[] = [];
  readonly #seqs: number[] = [];
  readonly #items: T[] = [];
  #seq = 0;

  get size(): number {
    return this.#items.length;
  }

  push(atMs: number, item: T): void {
    const times = this.#times;
    const seqs = this.#seqs;
    const items = this.#items;
    const seq = this.#seq++;
    let i = items.length;
    times.push(atMs);
    seqs.push(seq);
    items.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pt = times[p] as number;
      if (pt < atMs || (pt === atMs && (seqs[p] as number) < seq)) break;
      times[i] = pt;
      seqs[i] = seqs[p] as number;
      items[i] = items[p] as T;
      i = p;
    }
    times[i] = atMs;
    seqs[i] = seq;
    items[i] = item;
  }

  /** Time of the next event (Infinity when empty). */
  peekTime(): number {
    return this.#times.length > 0 ? (this.#times[0] as number) : Number.POSITIVE_INFINITY;
  }

  /** Removes and returns the next event with its time; undefined when empty. */
  pop(): { atMs: number; item: T } | undefined {
    const times = this.#times;
    const seqs = this.#seqs;
    const items = this.#items;
    const n = items.length;
    if (n === 0) return undefined;
    const out = { atMs: times[0] as number, item: items[0] as T };
    const lastT = times.pop() as number;
    const lastS = seqs.pop() as number;
    const lastI = items.pop() as T;
    if (n === 1) return out;
    const m = n - 1;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= m) break;
      const r = l + 1;
      let c = l;
      if (r < m) {
        const lt = times[l] as number;
        const rt = times[r] as number;
        if (rt < lt || (rt === lt && (seqs[r] as number) < (seqs[l] as number))) c = r;
      }
      const ct = times[c] as number;
      if (ct > lastT || (ct === lastT && (seqs[c] as number) > lastS)) break;
      times[i] = ct;
      seqs[i] = seqs[c] as number;
      items[i] = items[c] as T;
      i = c;
    }
    times[i] = lastT;
    seqs[i] = lastS;
    items[i] = lastI;
    return out;
  }
}
