import * as net from "node:net";

/** How the proxy treats traffic right now. */
export type ProxyMode =
  /** Forward everything. */
  | { kind: "pass" }
  /** Forward every chunk after `ms` (plus up to `jitterMs`). */
  | { kind: "delay"; ms: number; jitterMs?: number }
  /** Keep connections open but forward nothing in either direction (a black hole: no FIN, no RST). */
  | { kind: "blackhole" }
  /** Close the side towards the upstream only (a half-open connection). */
  | { kind: "half-open" };

/** An in-process TCP proxy on loopback for network-fault tests. */
export interface FaultProxy {
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  setMode(mode: ProxyMode): void;
  /** Resets every open connection (RST). */
  dropAll(): void;
  close(): Promise<void>;
}

/** Starts a proxy on 127.0.0.1 that forwards to `127.0.0.1:targetPort` under a switchable fault mode. */
export async function startFaultProxy(targetPort: number): Promise<FaultProxy> {
  let mode: ProxyMode = { kind: "pass" };
  let accepted = 0;
  const pairs = new Set<[net.Socket, net.Socket]>();
  const forward = (from: net.Socket, to: net.Socket) => {
    from.on("data", (chunk: Buffer) => {
      const m = mode;
      if (m.kind === "blackhole" || m.kind === "half-open") return; // swallowed
      if (m.kind === "delay") {
        const ms = m.ms + Math.random() * (m.jitterMs ?? 0);
        from.pause();
        setTimeout(() => {
          if (!to.destroyed) to.write(chunk);
          from.resume();
        }, ms);
        return;
      }
      if (!to.destroyed) to.write(chunk);
    });
  };
  const server = net.createServer((client) => {
    accepted++;
    const upstream = net.connect(targetPort, "127.0.0.1");
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    forward(client, upstream);
    forward(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    get accepted() {
      return accepted;
    },
    setMode(m) {
      mode = m;
      if (m.kind === "half-open") for (const [, upstream] of pairs) upstream.end();
    },
    dropAll() {
      for (const [client, upstream] of pairs) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
      pairs.clear();
    },
    close() {
      for (const [client, upstream] of pairs) {
        client.destroy();
        upstream.destroy();
      }
      // Bounded: a peer that keeps reconnecting must not hold the test up.
      return new Promise((resolve) => {
        server.close(() => resolve());
        setTimeout(resolve, 2_000).unref();
      });
    },
  };
}
