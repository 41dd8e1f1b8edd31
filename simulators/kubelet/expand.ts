// Kubernetes `$(VAR)` expansion, as the kubelet applies it to env values, command, args and
// subPathExpr (a port of k8s.io/kubernetes third_party/forked/golang/expansion). `$$` is an escaped
// `$`; a reference to an unknown variable, or an unterminated `$(`, is left as written.
export function expand(input: string, lookup: (name: string) => string | undefined): string {
  let out = "";
  let checkpoint = 0;
  for (let cursor = 0; cursor < input.length; cursor++) {
    if (input[cursor] !== "$" || cursor + 1 >= input.length) continue;
    out += input.slice(checkpoint, cursor);
    const [read, isVar, advance] = readVariableName(input.slice(cursor + 1));
    out += isVar ? (lookup(read) ?? `$(${read})`) : read;
    cursor += advance;
    checkpoint = cursor + 1;
  }
  return out + input.slice(checkpoint);
}

function readVariableName(input: string): [string, boolean, number] {
  if (input[0] === "$") return ["$", false, 1];
  if (input[0] === "(") {
    const close = input.indexOf(")", 1);
    return close === -1 ? ["$(", false, 1] : [input.slice(1, close), true, close + 1];
  }
  return [`$${input[0] ?? ""}`, false, 1];
}

/** A lookup over several maps, the first that has the name winning. */
export function lookupIn(...maps: ReadonlyMap<string, string>[]): (name: string) => string | undefined {
  return (name) => {
    for (const m of maps) {
      const value = m.get(name);
      if (value !== undefined) return value;
    }
    return undefined;
  };
}
