// A delaying TCP relay for the multi-host test bed: delay and jitter where the kernel has no
// sch_netem. One process relays one link: it listens on LISTEN (host:port) inside a host's
// namespace and forwards every connection to TARGET (host:port), holding each chunk read
// from either side for a random delay drawn uniformly from [max(0, delayMs - jitterMs),
// delayMs + jitterMs] ms before writing it on, and never letting a chunk overtake the one
// before it (a chunk whose draw would land earlier leaves right after its predecessor).
// argv[2] is a JSON plan: { listen, target, delayMs, jitterMs }. It prints
// `relay listening on HOST:PORT` once it accepts connections, and runs until killed.
//
// What this is not: the delay applies to chunks as the relay reads them (one read may hold
// many packets), so there is no per-packet jitter and no reordering; the TCP handshake is
// not delayed; and both TCP connections it joins see a clean, fast loopback-like path to
// the relay, so their congestion control never sees the delay. See docs/testbed.md.
import { connect, createServer } from "node:net";

const plan = JSON.parse(process.argv[2] ?? "{}");
const split = (hp) => {
  const i = hp.lastIndexOf(":");
  return { host: hp.slice(0, i), port: Number(hp.slice(i + 1)) };
};
const listen = split(String(plan.listen));
const target = split(String(plan.target));
const delayMs = Number(plan.delayMs ?? 0);
const jitterMs = Number(plan.jitterMs ?? 0);
if (!(listen.port > 0 && target.port > 0 && delayMs >= 0 && jitterMs >= 0)) {
  process.stderr.write(`relay: bad plan ${process.argv[2]}\n`);
  process.exit(2);
}
const lowMs = Math.max(0, delayMs - jitterMs);
const highMs = delayMs + jitterMs;
/** Bytes held per direction before the relay stops reading that side (its TCP window then fills). */
const HIGH_WATER = 4 * 1024 * 1024;
const LOW_WATER = 1024 * 1024;

/** Forwards `src` to `dst`, each chunk after its delay, in order; ends `dst` once `src` ended and all is out. */
function pipeDelayed(src, dst) {
  const queue = [];
  let held = 0;
  let lastAt = 0;
  let ended = false;
  let timer;
  let draining = false;
  const pump = () => {
    timer = undefined;
    const now = performance.now();
    while (!draining && queue.length > 0 && queue[0].at <= now) {
      const { chunk } = queue.shift();
      held -= chunk.length;
      if (!dst.write(chunk)) {
        draining = true;
        dst.once("drain", () => {
          draining = false;
          schedule();
        });
      }
    }
    if (held <= LOW_WATER && src.isPaused() && !src.destroyed) src.resume();
    schedule();
  };
  const schedule = () => {
    if (timer !== undefined || draining || dst.destroyed) return;
    if (queue.length === 0) {
      if (ended && !dst.writableEnded) dst.end();
      return;
    }
    timer = setTimeout(pump, Math.max(0, queue[0].at - performance.now()));
  };
  src.on("data", (chunk) => {
    const at = Math.max(lastAt, performance.now() + lowMs + Math.random() * (highMs - lowMs));
    lastAt = at;
    queue.push({ at, chunk });
    held += chunk.length;
    if (held > HIGH_WATER) src.pause();
    schedule();
  });
  src.on("end", () => {
    ended = true;
    schedule();
  });
  return () => clearTimeout(timer);
}

const server = createServer({ allowHalfOpen: true, noDelay: true }, (down) => {
  const up = connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
  const stops = [pipeDelayed(down, up), pipeDelayed(up, down)];
  let closed = 0;
  const close = (hadError) => {
    // A reset on one side resets the other; a clean close waits for the other's queue.
    if (hadError) {
      down.destroy();
      up.destroy();
    }
    if (++closed === 2) for (const stop of stops) stop();
  };
  down.on("error", () => {});
  up.on("error", () => {});
  down.on("close", close);
  up.on("close", close);
});
server.on("error", (e) => {
  process.stderr.write(`relay: ${e.message}\n`);
  process.exit(1);
});
server.listen(listen.port, listen.host, () => {
  process.stdout.write(`relay listening on ${plan.listen}\n`);
});
