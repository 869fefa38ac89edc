// The simulated network: every message is a scheduled event with a random delay; in the
// fault window messages are dropped, duplicated, delayed past the TTL and reordered.
import type { SimEvent } from "./messages.js";
import type { World } from "./world.js";

export class Network {
  constructor(private readonly world: World) {}

  delay(): number {
    const { rng, sc } = this.world;
    let d = rng.int(1, sc.maxDelayMs);
    if (!this.world.calm && rng.chance(sc.slowP)) d += rng.int(0, sc.ttlMs * 2);
    return d;
  }

  /** Sends a message through the faulty network: it may be dropped, delayed, reordered or duplicated. */
  transmit(e: SimEvent, what: string): void {
    const w = this.world;
    if (!w.calm && w.rng.chance(w.sc.dropP)) {
      w.stats.dropped++;
      if (w.trace) w.log(`net drop ${what}`);
      return;
    }
    w.at(this.delay(), e);
    if (!w.calm && w.rng.chance(w.sc.dupP)) {
      w.stats.duplicated++;
      if (w.trace) w.log(`net dup ${what}`);
      w.at(this.delay(), e);
    }
  }
}
