// Types for parse-prometheus-text-format (the package ships none). It parses the
// Prometheus text format into prom2json-shaped objects; values stay strings.
declare module "parse-prometheus-text-format" {
  /** One sample of a counter, gauge or untyped family. */
  export interface PromSample {
    value: string;
    labels?: Record<string, string>;
  }
  /** One series of a histogram family: cumulative buckets by upper bound ("+Inf" last). */
  export interface PromHistogramSample {
    buckets: Record<string, string>;
    count: string;
    sum: string;
    labels?: Record<string, string>;
  }
  /** One metric family. */
  export interface PromFamily {
    name: string;
    help: string;
    type: "COUNTER" | "GAUGE" | "HISTOGRAM" | "SUMMARY" | "UNTYPED";
    metrics: (PromSample | PromHistogramSample)[];
  }
  /** Parses a whole exposition. Throws on malformed input. */
  export default function parsePrometheusTextFormat(text: string): PromFamily[];
}
