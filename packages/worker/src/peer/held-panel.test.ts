import { PanelAxis, type ReadPanelRequest } from "@dce/proto";
import { describe, expect, it } from "vitest";
import { createBlobCache } from "../inputs/blob-cache.js";
import { colPanelKey } from "../inputs/panel-key.js";
import { findHeldPanel } from "./held-panel.js";

// What the panel server may answer a peer from: a held or loading panel, except a load that
// is itself reading the panel from a peer (two workers each joining the other's load would
// wait for each other until the call's deadline).

const blobId = "a".repeat(64);
const req = {
  blobId,
  rows: 4,
  cols: 6,
  axis: PanelAxis.COLS,
  start: 2,
  end: 4,
  offset: 0n,
  maxBytes: 0,
} as ReadPanelRequest;
const key = colPanelKey(blobId, 2, 4);
const panel = () => Float64Array.from({ length: 8 }, (_, i) => i + 1);

describe("findHeldPanel", () => {
  it("joins a load under way that reads from the coordinator", async () => {
    const cache = createBlobCache({ budgetBytes: 1 << 20 });
    let finish: (v: Float64Array) => void = () => {};
    void cache.getOrLoad(key, () => new Promise<Float64Array>((r) => (finish = r)), new AbortController().signal);
    const found = findHeldPanel(cache, req, new AbortController().signal, () => false);
    expect(found).toBeDefined();
    finish(panel());
    expect((await found)?.totalBytes).toBe(64);
  });

  it("answers at once, without joining, while its own load reads that panel from a peer", () => {
    const cache = createBlobCache({ budgetBytes: 1 << 20 });
    void cache.getOrLoad(key, () => new Promise<Float64Array>(() => {}), new AbortController().signal);
    expect(findHeldPanel(cache, req, new AbortController().signal, (k) => k === key)).toBeUndefined();
  });

  it("serves a panel it holds even while another read of it from a peer is under way", async () => {
    const cache = createBlobCache({ budgetBytes: 1 << 20 });
    await cache.getOrLoad(key, async () => panel(), new AbortController().signal);
    const held = await findHeldPanel(cache, req, new AbortController().signal, () => true);
    expect(held?.page(0, 16)).toEqual(new Uint8Array(panel().buffer, 0, 16));
  });
});
