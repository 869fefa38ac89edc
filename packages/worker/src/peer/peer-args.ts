import { isWildcardHost, parseHostPort } from "./host-port.js";

/**
 * What is wrong with `--peer-listen` and `--peer-advertise`, one line per problem (empty
 * when nothing): each must be `HOST:PORT`; a listen address on every interface needs an
 * advertised one; the advertised one must be dialable (no wildcard host, no port 0); and
 * advertising without listening means nothing.
 */
export function peerAddressProblems(listen: string | undefined, advertise: string | undefined): string[] {
  const problems: string[] = [];
  const parsedListen = listen === undefined ? undefined : parseHostPort(listen);
  const parsedAdvertise = advertise === undefined ? undefined : parseHostPort(advertise);
  if (typeof parsedListen === "string") problems.push(`--peer-listen: ${parsedListen}`);
  if (typeof parsedAdvertise === "string") problems.push(`--peer-advertise: ${parsedAdvertise}`);
  if (listen === undefined && advertise !== undefined) problems.push("--peer-advertise needs --peer-listen");
  if (typeof parsedListen === "object" && advertise === undefined && isWildcardHost(parsedListen.host)) {
    problems.push(
      `--peer-listen ${listen} listens on every interface: give --peer-advertise, the HOST:PORT other workers reach it at`,
    );
  }
  if (typeof parsedAdvertise === "object" && (parsedAdvertise.port === 0 || isWildcardHost(parsedAdvertise.host))) {
    problems.push(`--peer-advertise must be an address other workers can dial, got "${advertise}"`);
  }
  return problems;
}
