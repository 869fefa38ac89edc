import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@dce/client-sdk";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type Cluster, ROOT, randomMatrix, startCluster } from "../support/cluster.js";

// The live dashboard in a real headless Chromium (Debian's, driven by playwright-core)
// against a real coordinator and two workers: the page must show the job and the
// workers, and the job's progress must advance while we watch. Screenshots go to
// test-artifacts/ (gitignored). CI installs chromium (.ci/run); elsewhere the test is
// skipped when /usr/bin/chromium is missing.

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = join(ROOT, "test-artifacts");
const haveChromium = existsSync(CHROMIUM);

// 768 x 768 x 768 in 48 x 48 tiles: 256 shards, a few seconds with the reference kernel on 2 workers.
const SIZE = 768;
const TILE = 48;
const INNER = 4096;
const SHARDS = (SIZE / TILE) ** 2;

let cluster: Cluster;
let browser: Browser;
beforeAll(async () => {
  if (!haveChromium) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  cluster = await startCluster({ workers: 2 });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
});
afterAll(async () => {
  await browser?.close();
  await cluster?.close();
});

/** Shards done of `jobId` as the page shows them, or -1 when its row is not there. */
async function shownDone(page: Page, jobId: string): Promise<number> {
  const text = await page
    .locator(`tr[data-job="${jobId}"] [data-testid="job-progress"]`)
    .textContent({ timeout: 100 })
    .catch(() => null);
  const m = /^([\d,]+) \/ ([\d,]+) shards$/.exec(text ?? "");
  return m ? Number(m[1]?.replaceAll(",", "")) : -1;
}

describe.skipIf(!haveChromium && !process.env.CI)("live dashboard in headless Chromium", () => {
  test("shows the job and the workers, and progress advances", async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (msg) => {
      if (msg.type() === "error") errors.push(msg.text());
    });

    const response = await page.goto(`${cluster.url}/ui#token=${cluster.adminToken}`);
    expect(response?.status()).toBe(200);
    await expect.poll(() => page.locator("#conn").textContent(), { timeout: 10_000 }).toBe("live");
    // Both workers are listed before any job exists.
    await expect
      .poll(async () => (await page.locator('[data-testid="worker-name"]').allTextContents()).sort(), { timeout: 10_000 })
      .toEqual(["w1", "w2"]);

    const client = createClient(cluster.clientOptions);
    // A deep inner dimension keeps the job running for seconds, so the mid-run checks are not a race.
    const job = await client.submitMatMul(randomMatrix(SIZE, INNER, 1), randomMatrix(INNER, SIZE, 2), {
      tileSize: TILE,
      kernel: "reference",
    });

    // Watch the progress the page shows until the job is done; screenshot it mid-run.
    const seen: number[] = [];
    let shot = false;
    const deadline = Date.now() + 120_000;
    for (;;) {
      const done = await shownDone(page, job.id);
      if (done >= 0 && seen.at(-1) !== done) seen.push(done);
      if (!shot && done >= SHARDS * 0.4 && done < SHARDS) {
        // Let the next poll draw the tile map and the busy workers, then keep the picture.
        await page.waitForTimeout(300);
        await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });
        shot = true;
        const busy = await page.locator("#workers .dot-busy").count();
        expect(busy).toBeGreaterThan(0);
        const leased = await page.locator("#workers .chip").count();
        expect(leased).toBeGreaterThan(0);
      }
      if (done === SHARDS) break;
      if (Date.now() > deadline) throw new Error(`job did not finish on the page; progress seen: ${seen.join(", ")}`);
      await page.waitForTimeout(100);
    }
    // The page saw the job part-way, then more of it: progress advanced, and never went back.
    expect(seen.filter((d) => d > 0 && d < SHARDS).length).toBeGreaterThanOrEqual(2);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);

    // The row reaches "succeeded", the tile map is all done, and the sparkline shows the work.
    const row = page.locator(`tr[data-job="${job.id}"]`);
    await expect.poll(() => row.locator('[data-testid="job-state"]').textContent(), { timeout: 30_000 }).toBe("succeeded");
    await expect.poll(() => page.locator("#legend").textContent()).toContain(`done ${SHARDS}`);
    const canvas = await page.locator("#tiles").boundingBox();
    expect(canvas?.width).toBeGreaterThan(100);
    expect(await page.locator("#spark path.spark-line").count()).toBe(1);
    if (!shot) await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-done.png"), fullPage: true });
    expect(existsSync(join(ARTIFACTS, "dashboard.png"))).toBe(true);
    expect(errors).toEqual([]);
    await context.close();
  });

  test("the data needs an admin token, which the page takes from the fragment and drops from the URL", async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    // Each case in a fresh tab: the page keeps its token in sessionStorage, which is per tab.
    const open = async (fragment: string) => {
      const page = await context.newPage();
      const response = await page.goto(`${cluster.url}/ui${fragment}`);
      expect(response?.status()).toBe(200); // the static shell holds no data and stays open
      return page;
    };
    const none = await open("");
    await expect.poll(() => none.locator("#conn").textContent(), { timeout: 10_000 }).toContain("needs an admin token");
    expect(await none.locator('[data-testid="worker-name"]').count()).toBe(0);
    const client = await open(`#token=${cluster.token}`);
    await expect.poll(() => client.locator("#conn").textContent(), { timeout: 10_000 }).toBe("this token is not an admin's");
    const admin = await open(`#token=${cluster.adminToken}`);
    await expect.poll(() => admin.locator("#conn").textContent(), { timeout: 10_000 }).toBe("live");
    expect(admin.url()).toBe(`${cluster.url}/ui`);
    // A reload keeps working from sessionStorage.
    await admin.reload();
    await expect.poll(() => admin.locator("#conn").textContent(), { timeout: 10_000 }).toBe("live");
    await context.close();
  });

  test("a job can be picked for the tile map, and the choice is kept in the URL", async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const client = createClient(cluster.clientOptions);
    const small = await client.submitMatMul(randomMatrix(8, 8, 3), randomMatrix(8, 8, 4), { tileSize: 4 });
    await small.result();
    await page.goto(`${cluster.url}/ui#token=${cluster.adminToken}`);
    const row = page.locator(`tr[data-job="${small.id}"]`);
    await row.click();
    await expect.poll(() => page.locator("#tiles-job").textContent(), { timeout: 10_000 }).toContain(small.id.slice(0, 8));
    await expect.poll(() => page.locator("#legend").textContent()).toContain("done 4");
    expect(new URL(page.url()).searchParams.get("job")).toBe(small.id);
    await context.close();
  });
});
