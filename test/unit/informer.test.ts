// The informer's cache and change reports, over a Kube that answers the list and hands the test
// the watch's event callback: which changes are echoes of this process's own writes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import { Informer, type KubernetesObject } from "../../controller/informer.ts";
import type { Kube, WatchEvent } from "../../controller/kube-client.ts";

const run = (resourceVersion: string, note = ""): KubernetesObject & { note: string } => ({
  metadata: { namespace: "ns", name: "r", resourceVersion },
  note,
});

async function started(keep?: (obj: KubernetesObject) => KubernetesObject) {
  let emit: ((e: WatchEvent<KubernetesObject>) => void) | undefined;
  const kube: Kube = {
    request: <T>() => Promise.resolve({ items: [run("1")], metadata: { resourceVersion: "1" } } as T),
    watch: <T>(_path: string, _query: unknown, onEvent: (e: WatchEvent<T>) => void) => {
      emit = onEvent as (e: WatchEvent<KubernetesObject>) => void;
      return { abort: () => undefined };
    },
  };
  const changes: { version: string | undefined; kind: string; echo: boolean }[] = [];
  const informer = new Informer<KubernetesObject>({
    kube,
    path: "/apis/tekton.dev/v1beta1/namespaces/ns/customruns",
    namespace: "ns",
    resyncMs: 3_600_000,
    ...(keep ? { keep } : {}),
    log: pino({ level: "silent" }),
    onChange: (obj, kind, echo) =>
      changes.push({ version: obj.metadata?.resourceVersion, kind, echo: !!echo }),
  });
  informer.start();
  await informer.whenSynced();
  await new Promise((resolve) => setImmediate(resolve));
  assert.ok(emit, "the informer watches once listed");
  changes.length = 0;
  return { informer, emit, changes };
}

test("the watch event of a version this process wrote is reported as an echo; any other is not", async () => {
  const { informer, emit, changes } = await started();
  informer.wrote(run("5", "ours"));
  assert.equal((informer.get("ns/r") as { note?: string }).note, "ours", "reads its own write at once");
  emit({ type: "MODIFIED", object: run("5", "ours") });
  emit({ type: "MODIFIED", object: run("6", "someone else's") });
  emit({ type: "MODIFIED", object: run("7", "after ours, again") });
  assert.deepEqual(changes, [
    { version: "5", kind: "modified", echo: true },
    { version: "6", kind: "modified", echo: false },
    { version: "7", kind: "modified", echo: false },
  ]);
  informer.stop();
});

test("a change that lands before this process's write comes back is not an echo", async () => {
  const { informer, emit, changes } = await started();
  informer.wrote(run("5", "ours"));
  emit({ type: "MODIFIED", object: run("4", "someone else's, earlier") });
  emit({ type: "MODIFIED", object: run("5", "ours") });
  assert.deepEqual(
    changes.map((c) => [c.version, c.echo]),
    [
      ["4", false],
      ["5", true],
    ],
  );
  informer.stop();
});

test("a change to nothing the owner keeps is cached but not reported", async () => {
  const dropNoise = (obj: KubernetesObject) => {
    const { noise: _noise, ...kept } = obj as KubernetesObject & { noise?: string };
    return kept;
  };
  const { informer, emit, changes } = await started(dropNoise);
  emit({ type: "MODIFIED", object: { ...run("2", "first"), noise: "a" } as KubernetesObject });
  emit({ type: "MODIFIED", object: { ...run("3", "first"), noise: "b" } as KubernetesObject });
  emit({ type: "MODIFIED", object: { ...run("4", "second"), noise: "b" } as KubernetesObject });
  assert.deepEqual(
    changes.map((c) => c.version),
    ["2", "4"],
  );
  assert.equal(informer.get("ns/r")?.metadata?.resourceVersion, "4", "the cache holds the newest version");
  informer.stop();
});
