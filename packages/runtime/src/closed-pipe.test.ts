import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { tolerateClosedPipe } from "./closed-pipe.js";

const errno = (code: string) => Object.assign(new Error(`write ${code}`), { code });

describe("tolerateClosedPipe", () => {
  it("drops EPIPE, where an unlistened 'error' would throw", () => {
    const stream = new EventEmitter();
    expect(() => stream.emit("error", errno("EPIPE"))).toThrow("EPIPE");
    const others: Error[] = [];
    tolerateClosedPipe(stream, (e) => others.push(e));
    expect(() => stream.emit("error", errno("EPIPE"))).not.toThrow();
    expect(others).toEqual([]);
  });

  it("passes any other write error on, once", () => {
    const stream = new EventEmitter();
    const others: Error[] = [];
    tolerateClosedPipe(stream, (e) => others.push(e));
    stream.emit("error", errno("ENOSPC"));
    stream.emit("error", errno("EIO"));
    expect(others.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(["ENOSPC"]);
  });
});
