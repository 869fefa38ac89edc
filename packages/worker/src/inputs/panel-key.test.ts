import { describe, expect, it } from "vitest";
import { colPanelKey, parsePanelKey, rowPanelKey } from "./panel-key.js";

const id = "ab".repeat(32);

describe("panel keys", () => {
  it("name row and column panels, and parse back", () => {
    expect(rowPanelKey(id, 0, 128)).toBe(`${id}:rows:0-128`);
    expect(colPanelKey(id, 5, 6)).toBe(`${id}:cols:5-6`);
    expect(parsePanelKey(colPanelKey(id, 5, 6))).toEqual({ blobId: id, axis: "cols", start: 5, end: 6 });
    expect(parsePanelKey(rowPanelKey(id, 0, 128))).toEqual({ blobId: id, axis: "rows", start: 0, end: 128 });
  });

  it.each([
    id,
    `${id}:cols:6-6`,
    `${id}:cols:7-6`,
    `${id}:diag:0-1`,
    `${id.toUpperCase()}:rows:0-1`,
    `${id}:rows:-1-2`,
    `x:rows:0-1`,
  ])("%s is not a panel key", (key) => {
    expect(parsePanelKey(key)).toBeUndefined();
  });
});
