import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateDevCertificates, loadTlsFiles } from "@dce/coordinator";

/** PEM files of one role: the CA it trusts, its certificate and key. */
export interface TlsRole {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** A cluster CA with two workers and a client, and an unrelated CA with a worker of its own. */
export interface PeerCerts {
  readonly worker1: TlsRole;
  readonly worker2: TlsRole;
  readonly client: TlsRole;
  /** worker-1 of another CA. */
  readonly stranger: TlsRole;
  remove(): Promise<void>;
}

/** Issues {@link PeerCerts} in a temporary folder. */
export async function issuePeerCerts(): Promise<PeerCerts> {
  const root = await mkdtemp(join(tmpdir(), "dce-peer-certs-"));
  await generateDevCertificates({ outDir: join(root, "cluster"), workers: 2 });
  await generateDevCertificates({ outDir: join(root, "other"), workers: 1 });
  return {
    worker1: loadTlsFiles(join(root, "cluster"), "worker-1"),
    worker2: loadTlsFiles(join(root, "cluster"), "worker-2"),
    client: loadTlsFiles(join(root, "cluster"), "client"),
    stranger: loadTlsFiles(join(root, "other"), "worker-1"),
    remove: () => rm(root, { recursive: true, force: true }),
  };
}
