// Names of the objects a run makes, bounded to what Kubernetes accepts.
import { createHash } from "node:crypto";

/** A DNS label no longer than max: the text itself, or a readable prefix and a short hash. */
export function boundedName(text: string, max: number): string {
  if (text.length <= max) return text;
  const hash = createHash("sha256").update(text).digest("hex").slice(0, 8);
  return `${text.slice(0, max - 9).replace(/-+$/, "")}-${hash}`;
}
