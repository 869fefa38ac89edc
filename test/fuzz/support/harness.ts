import { readFileSync } from "node:fs";
import { type DescMessage, fromBinary, fromJsonString, type Message, toJsonString } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import fc from "fast-check";

/**
 * The label of a call the coordinator never answered: the client gave up `GRACE_MS` after
 * the deadline it sent (grpc-timeout), by which time the server must have sent a status.
 */
export const NO_ANSWER = "NO ANSWER";

/**
 * How much longer than the deadline it sends (grpc-timeout) a client waits for a status.
 * A server ends a call at its deadline (DEADLINE_EXCEEDED, or OK for a health Watch); a
 * client that timed out at the same instant could not tell a late answer from none.
 */
export const GRACE_MS = 3_000;

/** One call whose answer broke a rule. */
export interface Failure {
  readonly rpc: string;
  readonly client: string;
  readonly kind: string;
  readonly answer: string;
  readonly request: string;
}

/** Counts per RPC and per answer, and the failures, over the whole file. */
export class Tally {
  readonly perRpc = new Map<string, Map<string, number>>();
  readonly perClient = new Map<string, number>();
  readonly failures: Failure[] = [];
  total = 0;
  add(rpc: string, client: string, answer: string): void {
    const m = this.perRpc.get(rpc) ?? new Map<string, number>();
    this.perRpc.set(rpc, m);
    m.set(answer, (m.get(answer) ?? 0) + 1);
    this.perClient.set(client, (this.perClient.get(client) ?? 0) + 1);
    this.total++;
  }
  fail(f: Failure): void {
    if (this.failures.length < 300) this.failures.push(f);
  }
  /** The summary printed after the run: per client, per RPC and per code. */
  summary(seed: number): string[] {
    const lines = [...this.perRpc.entries()]
      .sort(([x], [y]) => x.localeCompare(y))
      .map(([rpc, codes]) => {
        const n = [...codes.values()].reduce((s, v) => s + v, 0);
        const parts = [...codes.entries()].sort((x, y) => y[1] - x[1]).map(([c, k]) => `${c} ${k}`);
        return `  ${rpc.padEnd(52)} ${String(n).padStart(5)}  ${parts.join(", ")}`;
      });
    const codes = new Map<string, number>();
    for (const m of this.perRpc.values()) for (const [c, k] of m) codes.set(c, (codes.get(c) ?? 0) + k);
    return [
      `fuzz: ${this.total} requests (seed ${seed}); per client: ${[...this.perClient].map(([c, n]) => `${c} ${n}`).join(", ")}`,
      ...lines,
      `  codes: ${[...codes.entries()]
        .sort((x, y) => y[1] - x[1])
        .map(([c, k]) => `${c} ${k}`)
        .join(", ")}`,
    ];
  }
}

export const codeName = (c: Code | 0) => (c === 0 ? "OK" : (Code[c] ?? String(c)));

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function pool<T>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i] as T, i);
    }
  });
  await Promise.all(workers);
}

export function vmRssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : 0;
}

/** Does `bytes` decode as `schema`? (Then the request is well-formed, whatever it says.) */
export function decodes(schema: DescMessage, bytes: Uint8Array): boolean {
  try {
    fromBinary(schema, bytes);
    return true;
  } catch {
    return false;
  }
}

/** Does `json` decode as `schema`, as the server reads it (unknown fields ignored)? */
export function decodesJson(schema: DescMessage, json: string): boolean {
  try {
    fromJsonString(schema, json, { ignoreUnknownFields: true });
    return true;
  } catch {
    return false;
  }
}

export const short = (s: string) => (s.length > 300 ? `${s.slice(0, 300)}... (${s.length} chars)` : s);

export function describeMessage(schema: DescMessage, m: Message): string {
  try {
    return short(toJsonString(schema, m as never));
  } catch {
    return "(not printable as JSON)";
  }
}

/** An arbitrary that builds its value only when it is picked (large bodies are costly to build). */
export const lazy = <T>(build: () => T): fc.Arbitrary<T> => fc.constant(0).map(build);

/** The message of a status as it must reach a client: one it can decode, of a bounded length. */
export function badMessage(message: string): string | undefined {
  try {
    encodeURIComponent(message);
  } catch {
    return "not well-formed (a lone surrogate)";
  }
  if ([...message].length > 1024) return `${[...message].length} code points, over 1024`;
  return undefined;
}

/**
 * Roughly how many bytes a message holds (string lengths, byte lengths, one per number),
 * counted until `limit`. Large messages go as binary protobuf only: protobuf-es takes
 * seconds to write megabytes of base64 JSON, and they test nothing the binary ones do not.
 */
export function roughSize(v: unknown, limit: number): number {
  let n = 0;
  const walk = (x: unknown): void => {
    if (n >= limit) return;
    if (typeof x === "string") n += x.length;
    else if (x instanceof Uint8Array) n += x.byteLength;
    else if (Array.isArray(x)) for (const e of x) walk(e);
    else if (x !== null && typeof x === "object") for (const e of Object.values(x)) walk(e);
    else n += 1;
  };
  walk(v);
  return n;
}
