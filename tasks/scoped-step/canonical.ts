// JSON with object keys in order and undefined members left out, so that two values that mean the
// same always give the same text, whatever order their keys were written in (the API server
// returns a custom resource's keys sorted; the controller builds its own in its own order).
/** What JSON.stringify would write for a value with a toJSON (a Date: its ISO string). */
const asJson = (v: unknown): unknown =>
  v !== null && typeof v === "object" && typeof (v as { toJSON?: unknown }).toJSON === "function"
    ? (v as { toJSON: () => unknown }).toJSON()
    : v;

export function canonicalJson(json: unknown): string {
  const value = asJson(json);
  // As in JSON, an undefined array member is null.
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v ?? null)).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/**
 * Whether two values give the same canonical JSON, without building it: a pass compares the status
 * it would write with the one it read on every pass, so this is on the hot path.
 */
export function sameJson(a: unknown, b: unknown): boolean {
  const x = asJson(a);
  const y = asJson(b);
  if (x === y) return true;
  if (typeof x !== "object" || typeof y !== "object" || x === null || y === null) return false;
  if (Array.isArray(x) || Array.isArray(y)) {
    if (!Array.isArray(x) || !Array.isArray(y) || x.length !== y.length) return false;
    return x.every((v, i) => sameJson(v ?? null, y[i] ?? null));
  }
  const left = x as Record<string, unknown>;
  const right = y as Record<string, unknown>;
  let defined = 0;
  for (const key in left) {
    if (left[key] === undefined) continue;
    defined++;
    if (!Object.hasOwn(right, key) || !sameJson(left[key], right[key])) return false;
  }
  for (const key in right) if (right[key] !== undefined) defined--;
  return defined === 0;
}
