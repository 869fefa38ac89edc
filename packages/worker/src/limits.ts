/** Default largest gRPC message, in bytes: 4 MiB, gRPC's customary limit. */
export const defaultMaxMessageBytes = 4 * 1024 * 1024;
/** Smallest accepted largest-message setting, in bytes: 64 KiB. */
export const minMaxMessageBytes = 65_536;
/** Default byte budget of the input-matrix cache: 1 GiB. */
export const defaultCacheBytes = 1024 ** 3;
/** Default time running shards get to finish on close, in milliseconds. */
export const defaultShutdownGraceMs = 10_000;
