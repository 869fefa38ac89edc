import type { WorkerId } from "./ids.js";

// Panel holders: which workers hold (or are fetching) each A row panel and B column panel
// of a job, so that a grant can name peers to fetch a panel from instead of the
// coordinator. A worker granted a shard of tile row r holds A's row panel r; of tile
// column c, B's column panel c. Each panel remembers its first few holders, earliest
// first (the likeliest to have it whole by now), and only panels granted so far have an
// entry: O(rowTiles + colTiles) per job at most. Not durable; dropped with the job, and a
// forgotten worker is dropped from every panel.

/** Holders remembered per panel. A grant names at most {@link PEERS_PER_PANEL}; the spares stand in for holders that went away. */
export const HOLDERS_PER_PANEL = 6;

/** Peers a grant names per panel (A and B each). */
export const PEERS_PER_PANEL = 2;

/** The workers granted a shard of each tile row (A row panel) and tile column (B column panel) of one job. */
export interface PanelHolders {
  /** Tile row → its holders, earliest grant first, at most {@link HOLDERS_PER_PANEL}; rows never granted have no entry. */
  readonly rows: Map<number, WorkerId[]>;
  /** Tile column → its holders, the same way. */
  readonly cols: Map<number, WorkerId[]>;
}

/** A worker that serves a panel to its peers, as a grant names it. */
export interface PanelPeer {
  readonly workerId: WorkerId;
  /** host:port of its panel server. */
  readonly address: string;
  /** Its authenticated identity (certificate subject), so the fetcher can check whom it reached. */
  readonly identity: string;
}

/** What naming needs to know of a worker: undefined when it is gone or shut out (never named). */
export type PeerLookup = (workerId: WorkerId) => { readonly address: string; readonly identity: string } | undefined;

/** No holders yet. */
export function createPanelHolders(): PanelHolders {
  return { rows: new Map(), cols: new Map() };
}

/** The holder list of `panel` in `lists`, created empty on first use. */
export function holdersOf(lists: Map<number, WorkerId[]>, panel: number): WorkerId[] {
  let list = lists.get(panel);
  if (list === undefined) {
    list = [];
    lists.set(panel, list);
  }
  return list;
}

/**
 * Up to {@link PEERS_PER_PANEL} holders of `panel` other than `requester` that serve
 * peers (`lookup` gives a non-empty address), earliest grant first.
 */
export function namePeers(panel: readonly WorkerId[], requester: WorkerId, lookup: PeerLookup): PanelPeer[] {
  const out: PanelPeer[] = [];
  for (const workerId of panel) {
    if (out.length === PEERS_PER_PANEL) break;
    if (workerId === requester) continue;
    const w = lookup(workerId);
    if (w === undefined || w.address === "") continue;
    out.push({ workerId, address: w.address, identity: w.identity });
  }
  return out;
}

/**
 * Records `workerId` as a holder of `panel` (once). A full list first drops holders that
 * `lookup` no longer knows; if it is still full the worker is not recorded.
 */
export function addHolder(panel: WorkerId[], workerId: WorkerId, lookup: PeerLookup): void {
  if (panel.includes(workerId)) return;
  if (panel.length >= HOLDERS_PER_PANEL) {
    for (let i = panel.length - 1; i >= 0; i--) if (lookup(panel[i] as WorkerId) === undefined) panel.splice(i, 1);
  }
  if (panel.length < HOLDERS_PER_PANEL) panel.push(workerId);
}

/** Drops `workerId` from every panel of `holders`. */
export function dropHolder(holders: PanelHolders, workerId: WorkerId): void {
  for (const lists of [holders.rows, holders.cols]) {
    for (const [key, panel] of lists) {
      const i = panel.indexOf(workerId);
      if (i >= 0) panel.splice(i, 1);
      if (panel.length === 0) lists.delete(key);
    }
  }
}
