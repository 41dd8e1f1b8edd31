// Taking credential material out of text that came from the step (its log tail, its termination
// message) before any of it is cut short or written anywhere. It works with or without the
// credential Secret: the Secret's values are removed when it is at hand, and anything shaped like
// a credential is removed in any case.
import type { V1Secret } from "@kubernetes/client-node";

const mark = "[redacted]";
const shortest = 8;

const always = () => true;
const mixesCasesAndDigits = (s: string) => /[A-Z]/.test(s) && /[a-z]/.test(s) && /[0-9]/.test(s);

/** Text shaped like a credential, whoever it belongs to. */
const shapes: { pattern: RegExp; is: (match: string) => boolean }[] = [
  // AWS access key ids: long-term (AKIA) and temporary (ASIA).
  { pattern: /\b(?:AKIA|ASIA)[A-Z0-9]{12,}/g, is: always },
  // JWTs, whole or in part: every JWT starts with a base64url '{"'.
  { pattern: /eyJ[\w-]{6,}(?:\.[\w-]*){0,2}/g, is: always },
  // Secret keys and session tokens: 40+ characters of base64 mixing cases and digits. Hex hashes
  // and words do not mix all three, so they stay readable.
  { pattern: /[A-Za-z0-9+/=_-]{40,}/g, is: mixesCasesAndDigits },
];

/** Every piece of a Secret value a step might print: the whole, each line, each `key = value` value. */
export function secretPieces(secret: V1Secret | undefined): string[] {
  const pieces = new Set<string>();
  for (const encoded of Object.values(secret?.data ?? {})) {
    const plain = Buffer.from(encoded, "base64").toString("utf8");
    pieces.add(plain.trim());
    for (const line of plain.split("\n")) {
      pieces.add(line.trim());
      const assigned = /^[^=]*=\s*(.*)$/.exec(line)?.[1];
      if (assigned) pieces.add(assigned.trim());
    }
  }
  // Longest first, so a value is replaced whole before any line inside it is looked for.
  return [...pieces].filter((p) => p.length >= shortest).sort((a, b) => b.length - a.length);
}

/**
 * The text with every credential value and credential-shaped run replaced. A value cut off where
 * the text begins (the kubelet keeps only the end of a log) is caught by its tail.
 */
export function redact(text: string, secret?: V1Secret): string {
  let out = text;
  for (const piece of secretPieces(secret)) {
    out = out.replaceAll(piece, mark);
    for (let n = piece.length - 1; n >= shortest; n--) {
      if (out.startsWith(piece.slice(-n))) {
        out = mark + out.slice(n);
        break;
      }
    }
  }
  for (const { pattern, is } of shapes) out = out.replace(pattern, (m) => (is(m) ? mark : m));
  return out;
}
