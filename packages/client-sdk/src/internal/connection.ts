import type { BulkChannel } from "@dce/runtime/bulk-calls";
import { WideWindowSessionManager } from "@dce/runtime/http2";

// What the client's two connections to the coordinator share: TLS options and PINGs; and
// the second one, which carries UploadChunk and ReadBlob without Connect's copies.

/** What of the client's options the connections use (ClientOptions, without an import circle). */
interface ConnectionOptions {
  readonly baseUrl: string;
  readonly ca?: string | Uint8Array | undefined;
  readonly token?: string | undefined;
}

/** TLS options of the client's sessions. */
export function nodeOptionsOf(options: ConnectionOptions) {
  const { ca } = options;
  return ca === undefined ? {} : { ca: typeof ca === "string" ? ca : Buffer.from(ca.buffer, ca.byteOffset, ca.byteLength) };
}

/** Notices a dead connection under a long-poll long before the RPC deadline. */
export const ping = { pingIntervalMs: 5_000, pingTimeoutMs: 5_000 };

/** The connection UploadChunk and ReadBlob go on (`@dce/runtime/bulk-calls`), with the client's token. */
export function createBulkChannel(options: ConnectionOptions): BulkChannel {
  const { token } = options;
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  const manager = new WideWindowSessionManager(options.baseUrl, ping, nodeOptionsOf(options));
  return { manager, baseUrl: options.baseUrl, headers: () => headers };
}
