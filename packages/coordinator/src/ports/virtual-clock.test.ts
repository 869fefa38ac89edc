import { describe, expect, it } from "vitest";
import { every } from "./clock.js";
import { VirtualClock } from "./virtual-clock.js";

describe("VirtualClock", () => {
  it("fires due timers in time order, ties in the order they were set, each at its own time", () => {
    const clock = new VirtualClock(100);
    const fired: string[] = [];
    const at = (name: string) => () => fired.push(`${name}@${clock.nowMs()}`);
    clock.setTimer(30, at("c"));
    clock.setTimer(10, at("a"));
    clock.setTimer(10, at("b"));
    const cancel = clock.setTimer(20, at("cancelled"));
    cancel();
    clock.advance(25);
    expect(fired).toEqual(["a@110", "b@110"]);
    expect(clock.nowMs()).toBe(125);
    clock.advance(5);
    expect(fired).toEqual(["a@110", "b@110", "c@130"]);
    expect(clock.pendingTimers).toBe(0);
  });

  it("fires timers set by timers within the same advance, and 0 ms timers on advance(0)", () => {
    const clock = new VirtualClock();
    const fired: number[] = [];
    clock.setTimer(0, () => {
      fired.push(clock.nowMs());
      clock.setTimer(5, () => fired.push(clock.nowMs()));
    });
    expect(fired).toEqual([]);
    clock.advance(0);
    expect(fired).toEqual([0]);
    expect(clock.nextTimerAtMs()).toBe(5);
    clock.advance(10);
    expect(fired).toEqual([0, 5]);
  });

  it("every() repeats at its interval until stopped", () => {
    const clock = new VirtualClock();
    const ticks: number[] = [];
    const stop = every(clock, 250, () => ticks.push(clock.nowMs()));
    clock.advance(1_000);
    expect(ticks).toEqual([250, 500, 750, 1_000]);
    stop();
    clock.advance(1_000);
    expect(ticks).toHaveLength(4);
    expect(clock.pendingTimers).toBe(0);
    expect(() => clock.advance(-1)).toThrow(RangeError);
  });
});
