// make demo: brings up the local control plane, shows what is installed, and tears it down.
import { ApiextensionsV1Api, VersionApi } from "@kubernetes/client-node";
import { startControlPlane } from "./cluster/control-plane.ts";

const say = (line: string) => console.log(`==> ${line}`);
const started = Date.now();
say("starting a local control plane (etcd + kube-apiserver built from the Go module proxy)");
const cp = await startControlPlane({ log: (l) => console.log(`    ${l}`) });
try {
  const version = await cp.kubeConfig.makeApiClient(VersionApi).getCode();
  say(`kube-apiserver ${version.gitVersion} at ${cp.server}`);
  const crds = await cp.kubeConfig.makeApiClient(ApiextensionsV1Api).listCustomResourceDefinition();
  say("installed CRDs:");
  for (const crd of crds.items) {
    const versions = crd.spec.versions.map((v) => v.name).join(",");
    console.log(`    ${crd.metadata?.name ?? ""} (${versions})`);
  }
} finally {
  say("tearing the control plane down");
  await cp.stop();
}
say(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
