// Go duration strings, as Tekton writes spec.timeout ("1h30m", "90s", "1.5h", "0s").
import { RunFailure } from "./failure.ts";

const unitMs: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Milliseconds for a Go duration string; throws RunFailure(InvalidTimeout) when it is not one. */
export function parseGoDuration(text: string): number {
  const invalid = () =>
    new RunFailure(
      "InvalidTimeout",
      `timeout "${text}" is not a duration: use a Go duration such as "90s", "10m" or "1h30m" ("0s" means no timeout)`,
    );
  if (text === "0") return 0;
  const m = /^([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$/.exec(text);
  if (!m) throw invalid();
  if (m[1] === "-") throw invalid();
  let total = 0;
  for (const part of text.replace(/^[+-]/, "").matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(part[1]) * (unitMs[part[2] ?? ""] ?? Number.NaN);
  }
  if (!Number.isFinite(total)) throw invalid();
  return Math.round(total);
}
