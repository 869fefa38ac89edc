// dce coordinator dashboard. Read-only: polls /ui/api/state and redraws. No framework,
// no build step; every value from the server is written with textContent, never as HTML.

const POLL_MS = 500;
const COLORS = { d: "#16a34a", h: "#86efac", l: "#2563eb", r: "#f59e0b", p: "#e5e7eb" };
/** The job picked by a click (or ?job=ID); null = let the server pick the running one. */
let focusJobId = new URLSearchParams(location.search).get("job");

/**
 * The admin token the data endpoint needs. It comes in the URL fragment (/ui#token=…),
 * which browsers never send to a server (so no access log sees it), is kept in this
 * tab's sessionStorage, and is dropped from the address bar at once.
 */
const TOKEN_KEY = "dce-admin-token";
const adminToken = (() => {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    try {
      sessionStorage.setItem(TOKEN_KEY, fromHash);
    } catch {
      // storage disabled: the token lives as long as this page
    }
    history.replaceState(null, "", location.pathname + location.search);
    return fromHash;
  }
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
})();

// ---------------------------------------------------------------------------
// Small helpers

/** Creates an element with attributes and children (strings become text nodes). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);
const shortId = (id) => String(id).slice(0, 8);

function fmtNum(n, digits = 0) {
  if (!Number.isFinite(n)) return "–";
  return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function fmtRate(n) {
  if (!Number.isFinite(n) || n <= 0) return "0";
  return n >= 100 ? fmtNum(n) : n >= 10 ? fmtNum(n, 1) : fmtNum(n, 2);
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  const s = Math.max(0, ms) / 1000;
  if (s < 10) return `${s.toFixed(1)}s`;
  if (s < 60) return `${Math.round(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

function fmtAgo(ms) {
  if (ms < 1000) return "just now";
  return `${fmtDuration(ms)} ago`;
}

// ---------------------------------------------------------------------------
// Rendering

function renderStats(s) {
  $("st-running").textContent = fmtNum(s.totals.jobs.running);
  $("st-queued").textContent = fmtNum(s.totals.jobs.queued);
  $("st-workers").textContent = fmtNum(s.totals.workers);
  $("st-threads").textContent = fmtNum(s.totals.threads);
  $("st-rate").textContent = fmtRate(s.totals.shardsPerSec);
  $("st-gflops").textContent = fmtNum(s.totals.gflops, 2);
  $("st-done").textContent = fmtNum(s.totals.shardsCompleted);
  const st = s.storage;
  $("st-store").textContent = st ? `${fmtBytes(st.bytes)} · ${fmtNum(st.blobs)} blobs` : "–";
  $("st-free").textContent = st && st.freeBytes !== null ? fmtBytes(st.freeBytes) : "–";
  $("st-free").title = st && st.minFreeBytes !== null ? `uploads and submits refused below ${fmtBytes(st.minFreeBytes)}` : "";
  const j = s.totals.jobs;
  const gc = st
    ? ` · GC ${fmtNum(st.gcPasses)} passes, ${fmtNum(st.gcBlobsDeleted)} blobs (${fmtBytes(st.gcBytesDeleted)}) deleted`
    : "";
  $("meta").textContent =
    `up ${fmtDuration(s.nowMs - s.startedAtMs)} · ${fmtNum(j.succeeded)} succeeded · ${fmtNum(j.failed)} failed · ` +
    `${fmtNum(j.cancelled)} cancelled · ${fmtNum(s.totals.leases)} leases${gc}`;
}

function progressCell(job) {
  const total = Math.max(1, job.shardsTotal);
  const donePct = (job.shardsDone / total) * 100;
  const leasedPct = (job.shardsLeased / total) * 100;
  const bar = h("div", { class: "bar" }, h("div", { class: "bar-done" }), h("div", { class: "bar-leased" }));
  bar.children[0].style.width = `${donePct}%`;
  bar.children[1].style.width = `${leasedPct}%`;
  const extra = [];
  if (job.shardsLeased > 0) extra.push(`${fmtNum(job.shardsLeased)} leased`);
  if (job.shardsRetried > 0) extra.push(`${fmtNum(job.shardsRetried)} retried`);
  return h(
    "td",
    {},
    bar,
    h(
      "div",
      { class: "bar-text" },
      h("span", { "data-testid": "job-progress" }, `${fmtNum(job.shardsDone)} / ${fmtNum(job.shardsTotal)} shards`),
      h("span", {}, [`${Math.floor(donePct)}%`, ...extra].join(" · ")),
    ),
    job.error ? h("div", { class: "error-text" }, job.error) : null,
  );
}

function renderJobs(s) {
  const body = $("jobs").tBodies[0];
  const rows = s.jobs.map((job) => {
    const live = job.state === "running" || job.state === "queued";
    const eta = live ? (job.etaMs === null ? "–" : fmtDuration(job.etaMs)) : fmtDuration(job.elapsedMs);
    return h(
      "tr",
      { "data-job": job.id, "data-state": job.state, class: job.id === s.focusJobId ? "focus" : "" },
      h("td", {}, h("span", { class: "mono", title: job.id }, shortId(job.id)), h("span", { class: "sub-line" }, job.kernel)),
      h("td", {}, h("span", { class: `badge badge-${job.state}`, "data-testid": "job-state" }, job.state)),
      h(
        "td",
        {},
        `${fmtNum(job.rows)} × ${fmtNum(job.cols)}`,
        h("span", { class: "sub-line" }, `k ${fmtNum(job.inner)} · tile ${job.tileRows}×${job.tileCols}`),
      ),
      progressCell(job),
      h("td", { class: "num" }, `${fmtRate(job.shardsPerSec)}/s`),
      h("td", { class: "num", title: live ? "estimated time left" : "run time" }, live ? eta : h("span", { class: "none" }, eta)),
    );
  });
  body.replaceChildren(...rows);
  $("jobs-empty").hidden = rows.length > 0;
  const active = s.totals.jobs.running + s.totals.jobs.queued;
  $("jobs-hint").textContent = rows.length ? `${active} active · click a job for its tile map` : "";
}

function renderWorkers(s) {
  const body = $("workers").tBodies[0];
  const rows = s.workers.map((w) => {
    const chips = w.leases.map((l) =>
      h("span", { class: "chip mono", title: `job ${l.jobId}, epoch ${l.epoch}` }, `${shortId(l.jobId)} #${l.shardIndex}`),
    );
    if (w.leaseCount > w.leases.length) chips.push(h("span", { class: "chip chip-more" }, `+${w.leaseCount - w.leases.length}`));
    return h(
      "tr",
      { "data-worker": w.id },
      h(
        "td",
        {},
        h("span", { "data-testid": "worker-name" }, w.name || "(unnamed)"),
        h("span", { class: "sub-line mono", title: w.id }, shortId(w.id)),
      ),
      h(
        "td",
        { title: w.rejectedResults ? `${w.rejectedResults} result(s) failed verification` : "" },
        h("span", { class: `dot dot-${w.status}` }),
        // "quarantined" alone: this worker, for its own results; "(identity)": every worker with its certificate.
        h("span", { "data-testid": "worker-status" }, w.quarantine === "identity" ? "quarantined (identity)" : w.status),
        w.rejectedResults ? h("span", { class: "sub-line" }, `${w.rejectedResults} rejected`) : "",
      ),
      h("td", { class: "num" }, fmtNum(w.threads)),
      h("td", {}, chips.length ? h("div", { class: "chips" }, chips) : h("span", { class: "none" }, "—")),
      h("td", { class: "num" }, `${fmtRate(w.shardsPerSec)}/s`),
      h("td", { class: "num" }, fmtNum(w.shardsCompleted)),
      h("td", { class: "num" }, fmtAgo(s.nowMs - w.lastSeenMs)),
    );
  });
  body.replaceChildren(...rows);
  $("workers-empty").hidden = rows.length > 0;
  const quarantined = s.workers.filter((w) => w.status === "quarantined").length;
  $("workers-hint").textContent = rows.length
    ? `${rows.length - quarantined} registered${quarantined ? ` · ${quarantined} quarantined` : ""}`
    : "";
}

function renderTiles(s) {
  const canvas = $("tiles");
  const t = s.tiles;
  const legend = $("legend");
  if (!t) {
    canvas.width = 0;
    canvas.height = 0;
    $("tiles-job").textContent = "no job";
    legend.replaceChildren();
    return;
  }
  $("tiles-job").textContent = `job ${shortId(t.jobId)} · ${t.planRows}×${t.planCols} tiles`;
  const box = canvas.parentElement.clientWidth || 360;
  const maxH = 360;
  const cell = Math.max(1, Math.floor(Math.min(box / t.gridCols, maxH / t.gridRows)));
  const gap = cell >= 6 ? 1 : 0;
  const w = cell * t.gridCols;
  const hgt = cell * t.gridRows;
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
    canvas.style.width = `${w}px`;
    canvas.style.height = `${hgt}px`;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  for (let i = 0; i < t.cells.length; i++) {
    const r = Math.floor(i / t.gridCols);
    const c = i - r * t.gridCols;
    ctx.fillStyle = COLORS[t.cells[i]] ?? COLORS.p;
    ctx.fillRect(c * cell, r * cell, cell - gap, cell - gap);
  }
  const item = (cls, label, n) => h("span", {}, h("span", { class: `swatch sw-${cls}` }), `${label} `, h("b", {}, fmtNum(n)));
  const parts = [
    item("d", "done", t.counts.done),
    item("l", "leased", t.counts.leased),
    item("r", "retried", t.counts.retried),
    item("p", "pending", t.counts.pending),
  ];
  if (t.blockSize > 1)
    parts.push(h("span", {}, h("span", { class: "swatch sw-h" }), `partly done · 1 cell = ${t.blockSize}×${t.blockSize} tiles`));
  legend.replaceChildren(...parts);
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function renderSpark(s) {
  // The last point is the current, partial second: leave it out so the line does not dip.
  const pts = s.throughput.slice(0, -1);
  const W = 360;
  const H = 100;
  const max = Math.max(1, ...pts.map((p) => p.shards));
  const step = pts.length > 1 ? W / (pts.length - 1) : W;
  const y = (v) => H - 4 - (v / max) * (H - 12);
  let line = "";
  pts.forEach((p, i) => {
    line += `${i === 0 ? "M" : "L"}${(i * step).toFixed(1)},${y(p.shards).toFixed(1)}`;
  });
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", "aria-label": "throughput" });
  root.append(svg("line", { x1: 0, x2: W, y1: H - 4, y2: H - 4, class: "spark-base" }));
  if (pts.length > 1) {
    root.append(svg("path", { d: `${line}L${W},${H - 4}L0,${H - 4}Z`, class: "spark-area" }));
    root.append(svg("path", { d: line, class: "spark-line" }));
  }
  const legend = h(
    "div",
    { class: "spark-legend" },
    h("span", {}, `now ${fmtRate(s.totals.shardsPerSec)}/s · ${fmtNum(s.totals.gflops, 2)} GFLOP/s`),
    h("span", {}, `peak ${fmtNum(max)}/s`),
  );
  $("spark").replaceChildren(root, legend);
}

function setConnection(kind, text) {
  const el = $("conn");
  el.className = `pill pill-${kind}`;
  el.textContent = text;
}

function render(s) {
  renderStats(s);
  renderJobs(s);
  renderWorkers(s);
  renderTiles(s);
  renderSpark(s);
  if (s.draining) setConnection("drain", "draining");
  else setConnection("live", "live");
}

// ---------------------------------------------------------------------------
// Polling

async function poll() {
  let delayMs = POLL_MS;
  try {
    const url = `/ui/api/state${focusJobId ? `?job=${encodeURIComponent(focusJobId)}` : ""}`;
    const headers = { accept: "application/json" };
    if (adminToken) headers.authorization = `Bearer ${adminToken}`;
    const res = await fetch(url, { cache: "no-store", headers });
    if (res.status === 401 || res.status === 403) {
      // A wrong token will not become right by polling faster.
      delayMs = 5_000;
      setConnection("off", res.status === 401 ? "needs an admin token: open /ui#token=TOKEN" : "this token is not an admin's");
      return;
    }
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    render(await res.json());
  } catch {
    setConnection("off", "disconnected");
  } finally {
    setTimeout(poll, delayMs);
  }
}

$("jobs").tBodies[0].addEventListener("click", (e) => {
  const row = e.target instanceof Element ? e.target.closest("tr[data-job]") : null;
  if (!row) return;
  focusJobId = row.getAttribute("data-job");
  const u = new URL(location.href);
  u.searchParams.set("job", focusJobId);
  history.replaceState(null, "", u);
});

poll();
