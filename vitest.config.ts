import { defineConfig } from "vitest/config";

// A modified copy of the core for the simulation's mutation check (test/sim/mutation-check.mjs):
// every import of @dce/core in the integration project, the coordinator's included, gets it.
const simCore = process.env["DCE_SIM_CORE"];

// One vitest run covers every layer; the projects split fast unit/property tests
// from the suites that start real processes (coordinator, workers, TLS).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["packages/*/src/**/*.test.ts"],
          testTimeout: 20_000,
        },
      },
      {
        ...(simCore ? { resolve: { alias: [{ find: /^@dce\/core$/, replacement: simCore }] } } : {}),
        test: {
          name: "integration",
          include: ["test/**/*.test.ts"],
          testTimeout: 180_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: "chaos",
          include: ["test/chaos/**/*.spec.ts"],
          testTimeout: 300_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
      {
        // Hosts in network namespaces (test/multihost/testbed.ts): root only, skips elsewhere.
        test: {
          name: "multihost",
          include: ["test/multihost/**/*.spec.ts"],
          testTimeout: 120_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
      {
        // A long run of many small jobs (test/soak): `pnpm test:soak`; CI runs a short one.
        test: {
          name: "soak",
          include: ["test/soak/**/*.spec.ts"],
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
