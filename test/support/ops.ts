import { execFile } from "node:child_process";
import * as http2 from "node:http2";
import * as https from "node:https";
import { join } from "node:path";
import parsePrometheusTextFormat, { type PromFamily, type PromSample } from "parse-prometheus-text-format";
import { ROOT } from "./cluster.js";

// Helpers for the operations endpoints of a real coordinator: plain HTTPS GETs over
// HTTP/1.1 or HTTP/2, `buf curl`, and a Prometheus text parser that shares no code
// with prom-client.

/** A plain HTTP answer. */
export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** "1.1" or "2.0". */
  httpVersion: string;
}

/** `authorization` header for a bearer token. */
export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

/** GET over HTTPS with HTTP/1.1 (node:https), verifying the server against `ca`. */
export function getHttp1(url: string, ca: string, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, agent: false, headers: { connection: "close", ...headers } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, httpVersion: res.httpVersion }));
    });
    req.on("error", reject);
  });
}

/** GET over HTTPS with HTTP/2 (node:http2), verifying the server against `ca`. */
export function getHttp2(url: string, ca: string, requestHeaders: Record<string, string> = {}): Promise<HttpAnswer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const session = http2.connect(u.origin, { ca });
    session.on("error", reject);
    const req = session.request({ ":path": u.pathname + u.search, ...requestHeaders });
    let status = 0;
    let headers: Record<string, string | string[] | undefined> = {};
    let body = "";
    req.setEncoding("utf8");
    req.on("response", (h) => {
      status = Number(h[":status"]);
      headers = h;
    });
    req.on("data", (d: string) => {
      body += d;
    });
    req.on("end", () => {
      session.close();
      resolve({ status, headers, body, httpVersion: "2.0" });
    });
    req.on("error", reject);
    req.end();
  });
}

/** Result of a `buf curl` run. */
export interface BufCurlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the repository's `buf curl` with `args`; never throws for a non-zero exit. */
export function bufCurl(args: string[]): Promise<BufCurlResult> {
  return new Promise((resolve) => {
    execFile(join(ROOT, "node_modules/.bin/buf"), ["curl", ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** One histogram series rebuilt from its samples. */
export interface HistogramSeries {
  /** Cumulative counts by upper bound, in exposition order; the last bound is Infinity ("+Inf"). */
  buckets: { le: number; count: number }[];
  count: number;
  sum: number;
}

/** Parsed `/metrics` with lookups by name and labels. */
export interface Scrape {
  readonly families: PromFamily[];
  /** The value of the sample of `name` whose labels include `labels`; undefined when absent. */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** The sum over every sample of `name` whose labels include `labels`. */
  sum(name: string, labels?: Record<string, string>): number;
  /** The histogram series of `name` whose labels include `labels`; undefined when absent. */
  histogram(name: string, labels?: Record<string, string>): HistogramSeries | undefined;
}

const matches = (have: Record<string, string> | undefined, want: Record<string, string>) =>
  Object.entries(want).every(([k, v]) => have?.[k] === v);

/**
 * Parses the Prometheus text format with parse-prometheus-text-format. That parser
 * folds every series of a histogram into one (it keeps labelled histograms apart
 * badly), so histograms are parsed a second time without their TYPE line: their
 * `_bucket`, `_sum` and `_count` samples then come out one by one, with labels.
 */
export function parseScrape(text: string): Scrape {
  const families = parsePrometheusTextFormat(text);
  const untyped = parsePrometheusTextFormat(text.replace(/^# TYPE \S+ histogram$/gm, ""));
  const samples = (from: PromFamily[], name: string, labels: Record<string, string>) =>
    from
      .filter((f) => f.name === name)
      .flatMap((f) => f.metrics as PromSample[])
      .filter((m) => matches(m.labels, labels));
  return {
    families,
    value: (name, labels = {}) => {
      const hit = samples(families, name, labels)[0];
      return hit === undefined ? undefined : Number(hit.value);
    },
    sum: (name, labels = {}) => samples(families, name, labels).reduce((n, m) => n + Number(m.value), 0),
    histogram: (name, labels = {}) => {
      const count = samples(untyped, `${name}_count`, labels)[0];
      const sum = samples(untyped, `${name}_sum`, labels)[0];
      if (!count || !sum) return undefined;
      const buckets = samples(untyped, `${name}_bucket`, labels).map((b) => ({
        le: b.labels?.le === "+Inf" ? Number.POSITIVE_INFINITY : Number(b.labels?.le),
        count: Number(b.value),
      }));
      return { buckets, count: Number(count.value), sum: Number(sum.value) };
    },
  };
}
