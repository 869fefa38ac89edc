// The fault schedule of a run, carried out: coordinator crashes (plain or mid-fsync, with a
// restart after its downtime), worker crashes (with or without a comeback) and pauses, and
// the calm phase after the fault window, in which dead workers come back.
import type { Fault } from "../scenario.js";
import type { World } from "./world.js";

export function applyFault(world: World, f: Fault): void {
  switch (f.kind) {
    case "coord-crash":
      if (!world.coord.up) return;
      world.coord.crash(f.torn);
      world.at(f.downMs, { k: "coord-restart" });
      return;
    case "worker-crash":
      world.workers.crash(f.slot, f.comebackMs);
      return;
    case "worker-pause":
      world.workers.pause(f.slot, f.pauseMs);
      return;
  }
}

/** The fault window ends: no more drops, failures or crashes, and every dead worker comes back. */
export function beginCalm(world: World): void {
  world.calm = true;
  if (world.trace) world.log("CALM: no more faults");
  for (const w of world.workers.all) if (!w.up) world.at(world.rng.int(0, 50), { k: "worker-start", slot: w.slot });
}
