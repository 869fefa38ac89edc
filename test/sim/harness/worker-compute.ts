// What a simulated worker does once its kernel finished a tile: die (chaos modes), fail or
// hand the lease back (fault window), or report the tile, which a corrupting slot may have
// changed and a buggy worker may also report under a garbled key.
import { computeTile } from "../matrix.js";
import type { SimWorker, SimWorkers } from "./workers.js";
import type { World } from "./world.js";

export function onComputed(world: World, workers: SimWorkers, w: SimWorker, key: string): void {
  const { sc, rng, vrng, stats } = world;
  const run = w.runs.get(key);
  if (!run || run.tile) return;
  const chaos = sc.chaos;
  const poisoned = world.isPoisonJob(run.lease.jobId) && run.lease.shardIndex === chaos?.poison?.shard;
  if (chaos && (poisoned || rng.chance(chaos.crashRate))) {
    // Like `worker --chaos-crash-rate` / `--chaos-crash-on-shard`: it dies before reporting, and a respawn loop restarts it.
    workers.crash(w.slot, rng.int(...chaos.respawnMs));
    return;
  }
  if (!world.calm && rng.chance(sc.shardFailP)) {
    stats.shardFailures++;
    workers.failRun(w, run, "simulated kernel error", false);
    return;
  }
  if (!world.calm && rng.chance(sc.releaseP)) {
    stats.releases++;
    workers.failRun(w, run, "handed back", true);
    return;
  }
  const a = world.inputs.get(run.grant.spec.a.blobId);
  const b = world.inputs.get(run.grant.spec.b.blobId);
  if (!a || !b) {
    world.oracle.fail(`grant ${key} names unknown input blobs`);
    return;
  }
  run.tile = computeTile(a, b, run.grant.bounds, w.build);
  if (sc.corrupter?.slot === w.slot && run.tile.length > 0 && vrng.chance(sc.corrupter.p)) {
    // Far above any rounding: a NaN, a flipped top exponent bit, or one entry off by a quarter of (1 + |v|).
    const i = vrng.int(0, run.tile.length - 1);
    const v = run.tile[i] as number;
    const mode = vrng.int(0, 2);
    run.tile[i] = mode === 0 ? Number.NaN : mode === 1 ? flipTopExponentBit(v) : v + (1 + Math.abs(v)) / 4;
    world.corrupted.add(run.tile);
    stats.corruptedResults++;
  }
  const other = [...w.runs.values()].find((r) => r.key !== key);
  if (other && w.id !== undefined && !world.calm && rng.chance(sc.garbledP)) {
    // Must be refused: epochs are unique per grant, so this epoch is not a lease of that shard.
    stats.garbledReports++;
    const lease = { jobId: other.lease.jobId, shardIndex: other.lease.shardIndex, epoch: run.lease.epoch };
    workers.send(w, { t: "complete", workerId: w.id, lease, tile: run.tile }, sc.rpcTimeoutMs);
  }
  workers.sendComplete(w, run);
}

/** Flips bit 62 (the top exponent bit): 2^±1024 times the magnitude, or Inf/NaN; 0 becomes 2. */
function flipTopExponentBit(v: number): number {
  const x = new Float64Array([v]);
  const bits = new BigUint64Array(x.buffer);
  bits[0] = (bits[0] as bigint) ^ (1n << 62n);
  return x[0] as number;
}
