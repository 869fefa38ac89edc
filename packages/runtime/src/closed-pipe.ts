/**
 * A bin whose reader goes away (`dce list --json | head -1`, `coordinator --help | head`)
 * must not crash: without an 'error' listener, Node throws the EPIPE of a write to a
 * closed pipe as an uncaught exception, with a stack trace and exit 1
 * (`@dce/runtime/closed-pipe`, Node.js only).
 *
 * @packageDocumentation
 */
import type { EventEmitter } from "node:events";

/**
 * Drops what `stream` (a bin's stdout or stderr) can no longer deliver because its reader
 * went away, so the command goes on and ends with its own exit code. Any other write
 * error is passed to `onOtherError` once.
 */
export function tolerateClosedPipe(stream: EventEmitter, onOtherError: (e: Error) => void): void {
  let reported = false;
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE" || reported) return;
    reported = true;
    onOtherError(e);
  });
}
