/**
 * `HOST:PORT` as `--peer-listen` and `--peer-advertise` take it: a host name, an IPv4
 * address, or an IPv6 address in brackets (`[::1]:7071`), and a port 0–65535 (0 only to
 * listen on a free one).
 *
 * @packageDocumentation
 */

/** A parsed `HOST:PORT`; `host` without brackets. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Parses `HOST:PORT`; a string saying what is wrong when it is not one. */
export function parseHostPort(text: string): HostPort | string {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+)):(\d{1,5})$/.exec(text.trim());
  const port = match === null ? Number.NaN : Number(match[3]);
  if (match === null || port > 65_535) return `expected HOST:PORT (IPv6 in brackets, e.g. [::1]:7071), got "${text}"`;
  return { host: match[1] ?? match[2] ?? "", port };
}

/** `HOST:PORT` again, an IPv6 host in brackets: the form a URL and a peer's address take. */
export function formatHostPort({ host, port }: HostPort): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** Whether `host` listens on every interface (0.0.0.0, ::), which peers cannot be told to dial. */
export function isWildcardHost(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "[::]";
}
