// One seed of the deterministic simulation around the real coordinator (harness/):
// see README.md.
import type { CoreEvent, CoreState, StepResult } from "@dce/core";
import type { SimMode } from "./chaos-modes.js";
import { World } from "./harness/world.js";
import { SimViolation } from "./oracle.js";
import type { SimResult } from "./stats.js";

export interface SimOptions {
  readonly mode?: SimMode;
  /** Called with one line per simulated event (DCE_SIM_VERBOSE=1). */
  readonly trace?: (line: string) => void;
  /** Folder for input files the verifier reads (named by content, so one folder serves every seed). */
  readonly spillDir?: string;
  /** The core's transition function the coordinator runs (default the real one; tests wrap it in broken variants). */
  readonly step?: (state: CoreState, event: CoreEvent) => StepResult<unknown>;
}

/** Runs one seed. Never throws for a broken guarantee: it returns it (with the time it was found). */
export async function runSim(seed: number, opts: SimOptions = {}): Promise<SimResult> {
  const w = new World(seed, opts);
  try {
    await w.run();
    return { ok: true, stats: w.stats };
  } catch (e) {
    w.stats.simMs = w.nowMs;
    const error =
      e instanceof SimViolation
        ? e.message
        : `t=${w.nowMs}: the simulator threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
    return { ok: false, seed, error, stats: w.stats };
  }
}
