import { Code, type ConnectRouter } from "@connectrpc/connect";
import { quote } from "@dce/core";
import { ErrorReason } from "@dce/proto";
import { dceError } from "../errors.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import type { ObservableCoordinator } from "./source.js";

/**
 * Registers the standard gRPC health service, `grpc.health.v1.Health`, on `router`.
 *
 * - `Check` answers SERVING while the coordinator takes work and NOT_SERVING once it
 *   drains. The service name "" asks about the server as a whole; any service
 *   registered on `router` may be named; another name gets NOT_FOUND (as the gRPC
 *   health-checking specification says).
 * - `List` answers the status of "" and of every registered service.
 * - `Watch` sends the current status, then each change (the start of a drain), until
 *   the call ends; an unknown service reads SERVICE_UNKNOWN and the call stays open.
 *
 * Every service on the coordinator shares one status: they drain together.
 */
export function registerHealthService(router: ConnectRouter, source: ObservableCoordinator): void {
  const status = () => (source.state.draining ? ServingStatus.NOT_SERVING : ServingStatus.SERVING);
  // Read when asked, so services registered after this one are known too.
  const known = (name: string) => name === "" || router.handlers.some((h) => h.service.typeName === name);
  router.service(Health, {
    check(req) {
      if (!known(req.service)) {
        throw dceError(Code.NotFound, ErrorReason.SERVICE_NOT_FOUND, `unknown service ${quote(req.service, 200)}`);
      }
      return { status: status() };
    },
    list() {
      const statuses: Record<string, { status: ServingStatus }> = { "": { status: status() } };
      for (const h of router.handlers) statuses[h.service.typeName] = { status: status() };
      return { statuses };
    },
    async *watch(req, ctx) {
      let last: ServingStatus | undefined;
      let wake: (() => void) | undefined;
      const unobserve = source.observe((event) => {
        if (event.type === "drain-started") wake?.();
      });
      const onAbort = () => wake?.();
      ctx.signal.addEventListener("abort", onAbort);
      try {
        while (!ctx.signal.aborted) {
          const now = known(req.service) ? status() : ServingStatus.SERVICE_UNKNOWN;
          if (now !== last) {
            last = now;
            yield { status: now };
            // Look again before waiting: a drain may have started while the message was out.
            continue;
          }
          // Wait for a drain or the end of the call; a slow re-check covers anything else.
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, 5_000);
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          wake = undefined;
        }
      } finally {
        unobserve();
        ctx.signal.removeEventListener("abort", onAbort);
      }
    },
  });
}
