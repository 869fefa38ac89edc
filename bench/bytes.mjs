// Bytes each process moved during one job, for `pnpm bench`: network bytes from the kernel's
// per-socket TCP counters (`ss -tinpH`: bytes_sent / bytes_received of every socket a PID
// owns), and file bytes from /proc/PID/io (rchar / wchar count every read and write call,
// sockets and pipes included, so the TCP bytes are taken off). Sampled before and after the
// job, outside its timed window.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/**
 * Every TCP socket of `pids` with its cumulative counters, keyed by its addresses and
 * owner. Undefined where `ss` is missing or cannot name the owners.
 */
export function tcpSockets(pids) {
  let text;
  try {
    text = execFileSync("ss", ["-tinpH"], { encoding: "utf8", maxBuffer: 64 * 2 ** 20 });
  } catch {
    return undefined;
  }
  return parseSs(text, new Set(pids));
}

/** Parses `ss -tinpH`: a header line per socket (addresses, users:(("node",pid=N,fd=M))) then its indented info line. */
export function parseSs(text, pids) {
  const out = new Map();
  let current;
  for (const line of text.split("\n")) {
    if (line.length === 0) continue;
    if (!/^\s/.test(line)) {
      const owners = [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])).filter((p) => pids.has(p));
      const cols = line.trim().split(/\s+/);
      current = owners.length > 0 ? { key: `${cols[3]}>${cols[4]}`, pid: owners[0] } : undefined;
      continue;
    }
    if (!current) continue;
    const sent = /bytes_sent:(\d+)/.exec(line);
    const received = /bytes_received:(\d+)/.exec(line);
    out.set(`${current.pid}:${current.key}`, {
      pid: current.pid,
      sent: sent ? Number(sent[1]) : 0,
      received: received ? Number(received[1]) : 0,
    });
    current = undefined;
  }
  return out;
}

/** rchar / wchar of each PID (every byte read or written through a system call). */
export function ioCounters(pids) {
  const out = new Map();
  for (const pid of pids) {
    try {
      const t = readFileSync(`/proc/${pid}/io`, "utf8");
      out.set(pid, { rchar: Number(/rchar: (\d+)/.exec(t)?.[1]), wchar: Number(/wchar: (\d+)/.exec(t)?.[1]) });
    } catch {}
  }
  return out;
}

/** CPU time (user + system, all threads) of each PID in ms, from /proc/PID/stat (clock ticks of 10 ms). */
export function cpuCounters(pids) {
  const out = new Map();
  for (const pid of pids) {
    try {
      const t = readFileSync(`/proc/${pid}/stat`, "utf8");
      // the command name in parentheses may hold spaces: count fields after its closing ')'
      const fields = t.slice(t.lastIndexOf(")") + 2).split(" ");
      out.set(pid, (Number(fields[11]) + Number(fields[12])) * 10);
    } catch {}
  }
  return out;
}

/** A sample of `roles` ({ name: pid }) to diff with {@link bytesMoved}. */
export function sampleBytes(roles) {
  const pids = Object.values(roles);
  return { roles, tcp: tcpSockets(pids), io: ioCounters(pids), cpu: cpuCounters(pids) };
}

/**
 * What each role moved between two samples, in bytes: `netSent` / `netReceived` over TCP
 * (TLS records included) and `fileRead` / `fileWritten` (read/write calls that were not
 * TCP: files, and a little pipe traffic for logs). A socket opened and closed between the
 * samples is not seen; one closed meanwhile counts nothing. `cpuMs` is the CPU time the role
 * used meanwhile (user + system, every thread).
 */
export function bytesMoved(before, after) {
  const out = {};
  for (const [role, pid] of Object.entries(after.roles)) {
    let netSent = 0;
    let netReceived = 0;
    if (after.tcp && before.tcp) {
      for (const [key, s] of after.tcp) {
        if (s.pid !== pid) continue;
        const b = before.tcp.get(key) ?? { sent: 0, received: 0 };
        netSent += Math.max(0, s.sent - b.sent);
        netReceived += Math.max(0, s.received - b.received);
      }
    }
    const i0 = before.io.get(pid);
    const i1 = after.io.get(pid);
    const io = i0 && i1 ? { r: i1.rchar - i0.rchar, w: i1.wchar - i0.wchar } : undefined;
    const c0 = before.cpu?.get(pid);
    const c1 = after.cpu?.get(pid);
    out[role] = {
      cpuMs: c0 !== undefined && c1 !== undefined ? c1 - c0 : undefined,
      netSent: after.tcp ? netSent : undefined,
      netReceived: after.tcp ? netReceived : undefined,
      fileRead: io ? Math.max(0, io.r - netReceived) : undefined,
      fileWritten: io ? Math.max(0, io.w - netSent) : undefined,
    };
  }
  return out;
}

/** "sent/received" of one role as multiples of `unit` (A+B+C), e.g. "1.02/0.67". */
export function multiples(a, b, unit) {
  const f = (x) => (x === undefined ? "?" : (x / unit).toFixed(2));
  return `${f(a)}/${f(b)}`;
}
