/** This package's version, as printed by `worker --version` (kept equal to package.json by a test). */
export const version = "0.1.0";
