import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../support/cluster.js";

// The multi-host test bed for vitest: hosts are network namespaces made by scripts/testbed.sh
// (the one implementation of the bed), and every process runs in its host through
// `ip netns exec`, in a process group of its own, killed by PID when the bed goes down.

const SCRIPT = join(ROOT, "scripts/testbed.sh");
const RELAY = join(ROOT, "test/multihost/relay.mjs");

function script(args: string[]): string {
  return execFileSync(SCRIPT, args, { encoding: "utf8", timeout: 30_000, stdio: ["ignore", "pipe", "pipe"] });
}

/** Why namespaces cannot be made here, or undefined when they can. */
export function testbedUnavailable(): string | undefined {
  if (process.platform !== "linux") return "the multi-host test bed needs Linux network namespaces";
  if (process.getuid?.() !== 0) return "the multi-host test bed needs root (ip netns, veth, tc)";
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore", timeout: 5_000 });
    execFileSync("tc", ["-V"], { stdio: "ignore", timeout: 5_000 });
  } catch {
    return "the multi-host test bed needs `ip` and `tc` (iproute2)";
  }
  try {
    script(["sweep"]);
    // A one-host bed proves namespaces, veth pairs, bridges and tbf all work.
    const id = String(process.pid);
    script(["up", "--id", id, "probe"]);
    script(["down", id]);
  } catch (e) {
    return `network namespaces cannot be made here: ${(e as { stderr?: string }).stderr ?? String(e)}`;
  }
  return undefined;
}

function succeeds(args: string[]): boolean {
  try {
    script(args);
    return true;
  } catch {
    return false;
  }
}

/** Whether the kernel has sch_netem (delay, jitter, loss). */
export function hasNetem(): boolean {
  return succeeds(["netem"]);
}

/** Whether nftables can drop packets at random here: loss without netem. */
export function hasNft(): boolean {
  return succeeds(["nft"]);
}

/** A process running in one host of the bed, with its captured output. */
export interface HostProc {
  readonly name: string;
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  readonly exited: Promise<number | string>;
  /** Kills its process group (SIGKILL by default) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Link settings: rate as tc spells it (e.g. "1gbit"), delay one way per direction (needs netem). */
export interface LinkShape {
  readonly rate: string;
  readonly delay?: string;
  readonly jitter?: string;
  readonly lossPercent?: number;
}

export interface Testbed {
  readonly id: string;
  /** Host name → its address on the bed's bridge. */
  readonly addr: Readonly<Record<string, string>>;
  /** Starts `node bin args` in `host`. */
  node(host: string, name: string, bin: string, args: string[], env?: Record<string, string>): HostProc;
  /**
   * Starts relay.mjs in `host`: it listens on `listen` (host:port) and forwards every
   * connection to `target`, each chunk `delayMs` ± `jitterMs` later, in order. Resolves once
   * it listens; it goes down with the bed.
   */
  relay(host: string, r: { listen: string; target: string; delayMs: number; jitterMs: number }): Promise<HostProc>;
  /** Drops every packet to `host` ("in"), from it ("out"), or both. */
  cut(host: string, dir: "in" | "out" | "both"): void;
  /** Restores `host`'s link. */
  heal(host: string): void;
  /** Reshapes both directions of `host`'s link. */
  shape(host: string, s: LinkShape): void;
  /** Bytes `host` received and sent on its link (counters of its veth). */
  counters(host: string): { rx: number; tx: number };
  /** Packets dropped on `host`'s link by its loss (netem or nftables) and rate (tbf), both directions. */
  drops(host: string): number;
  /** Kills every process started here, then removes every namespace, link and qdisc. */
  down(): Promise<void>;
}

/** Brings up a bed with one namespace per host, links shaped to `rate` (default 1gbit) and `delay` (0.2ms). */
export function upTestbed(hosts: string[], o: { rate?: string; delay?: string } = {}): Testbed {
  const id = String(process.pid);
  script(["down", id]);
  const out = script(["up", "--id", id, "--rate", o.rate ?? "1gbit", "--delay", o.delay ?? "0.2ms", ...hosts]);
  const addr: Record<string, string> = {};
  for (const line of out.trim().split("\n")) {
    const [host, , ip] = line.split(" ");
    if (host && ip) addr[host] = ip;
  }
  const procs = new Set<HostProc>();
  const node = (host: string, name: string, bin: string, args: string[], env: Record<string, string> = {}): HostProc => {
    if (!(host in addr)) throw new Error(`no host ${host} in the bed`);
    const child = spawn("ip", ["netns", "exec", `dcetb-${id}-${host}`, process.execPath, bin, ...args], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const exited = new Promise<number | string>((res) => child.on("exit", (code, sig) => res(code ?? sig ?? -1)));
    const p: HostProc = {
      name,
      child,
      stdout: "",
      stderr: "",
      exited,
      async kill(signal = "SIGKILL") {
        if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
          try {
            process.kill(-child.pid, signal);
          } catch {
            // Already gone.
          }
        }
        await exited;
      },
    };
    child.stdout?.on("data", (d: Buffer) => {
      p.stdout += d.toString();
    });
    child.stderr?.on("data", (d: Buffer) => {
      p.stderr += d.toString();
    });
    procs.add(p);
    return p;
  };
  let downing: Promise<void> | undefined;
  return {
    id,
    addr,
    node,
    async relay(host, r) {
      const p = node(host, `relay ${r.listen}`, RELAY, [JSON.stringify(r)]);
      await until(() => p.stdout.includes("relay listening on"), 10_000, `the relay on ${r.listen}`, p);
      return p;
    },
    cut: (host, dir) => void script(["cut", id, host, dir]),
    heal: (host) => void script(["heal", id, host]),
    shape: (host, s) => void script(["shape", id, host, s.rate, s.delay ?? "0.2ms", s.jitter ?? "0", String(s.lossPercent ?? 0)]),
    drops: (host) => Number(script(["drops", id, host]).trim()),
    counters(host) {
      const [rx, tx] = script(["counters", id, host]).trim().split(" ").map(Number);
      return { rx: rx ?? 0, tx: tx ?? 0 };
    },
    down() {
      downing ??= (async () => {
        await Promise.all([...procs].map((p) => p.kill()));
        script(["down", id]);
        keepLogs(procs);
      })();
      return downing;
    },
  };
}

/**
 * With DCE_BED_LOGDIR set, writes what each process of a bed printed to a directory of its
 * own there (one per bed, named by the time), for a failure whose tail is not enough.
 */
function keepLogs(procs: Iterable<HostProc>): void {
  const root = process.env["DCE_BED_LOGDIR"];
  if (!root) return;
  const dir = join(root, new Date().toISOString().replace(/[:.]/g, "-"));
  mkdirSync(dir, { recursive: true });
  for (const p of procs) writeFileSync(join(dir, `${p.name.replace(/[^\w.-]+/g, "_")}.log`), `${p.stdout}\n${p.stderr}`);
}

/** Waits until `pred()` holds or `timeoutMs` passes (then throws, naming `what`). */
export async function until(pred: () => boolean, timeoutMs: number, what: string, proc?: HostProc): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${proc ? `:\n${proc.stdout.slice(-1500)}\n${proc.stderr.slice(-3000)}` : ""}`,
      );
    await new Promise((r) => setTimeout(r, 20));
  }
}
