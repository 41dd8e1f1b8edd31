// A real local Kubernetes control plane: etcd and kube-apiserver built from the Go module proxy,
// on loopback and free ports, with generated certificates, an admin kubeconfig and the Tekton and
// KubeVela CRDs installed. Several can run side by side; each lives in its own directory.
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { pooledConnections } from "../../controller/kubeconfig.ts";
import { createPki, type Pki } from "./pki.ts";
import { buildTool, kubevela, tekton } from "./upstream.ts";
import { freePorts, startSupervised, stopSupervised, waitFor, type Supervised } from "./processes.ts";
import { installCrds, readCrds, upstreamCrdFiles } from "./crds.ts";

export interface ControlPlane {
  dir: string;
  server: string;
  etcdUrl: string;
  kubeconfigPath: string;
  kubeConfig: KubeConfig;
  pki: Pki;
  /** Stops both processes and, unless keepDir, removes the directory. */
  stop(opts?: { keepDir?: boolean }): Promise<void>;
}

export interface StartOptions {
  dir?: string;
  /** Extra CRD files (this project's own) installed with the upstream ones. */
  extraCrdFiles?: string[];
  log?: (line: string) => void;
  /**
   * For a cluster with a node (hack/cluster/node.ts): the node's address, which the API server
   * then also listens on and advertises as the `kubernetes` Service's endpoint.
   */
  node?: { ip: string; serviceCidr: string };
}

interface ClientTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

function httpGet(url: string, tls?: ClientTls): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const done = (res: http.IncomingMessage) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    };
    const req = tls
      ? https.get(url, { ...tls, timeout: 5000 }, done)
      : http.get(url, { timeout: 5000 }, done);
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
  });
}

function kubeconfigYaml(server: string, { ca, cert, key }: ClientTls): string {
  const b64 = (b: Buffer) => b.toString("base64");
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: local",
    "  cluster:",
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(ca)}`,
    "users:",
    "- name: admin",
    "  user:",
    `    client-certificate-data: ${b64(cert)}`,
    `    client-key-data: ${b64(key)}`,
    "contexts:",
    "- name: local",
    "  context: {cluster: local, user: admin, namespace: default}",
    "current-context: local",
    "",
  ].join("\n");
}

/** The `kubernetes` Service's ClusterIP: the first address of the range. */
function firstServiceIp(cidr: string): string {
  const [a, b, c, d] = (cidr.split("/")[0] ?? "").split(".").map(Number) as [number, number, number, number];
  return [a, b, c, d + 1].join(".");
}

export async function startControlPlane(opts: StartOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? (() => {});
  const dir = opts.dir ?? (await mkdtemp(path.join(os.tmpdir(), "scoped-step-cp-")));
  await mkdir(dir, { recursive: true });
  const etcdBin = await buildTool("etcd");
  const apiserverBin = await buildTool("kube-apiserver");
  const node = opts.node;
  const serviceIp = node ? firstServiceIp(node.serviceCidr) : "10.0.0.1";
  // prettier-ignore
  const sans = node
    ? [`IP:${node.ip}`, `IP:${serviceIp}`, "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc"]
    : [];
  const pki = await createPki(path.join(dir, "pki"), sans);
  const tls: ClientTls = {
    ca: await readFile(pki.caCert),
    cert: await readFile(pki.adminCert),
    key: await readFile(pki.adminKey),
  };
  const [etcdPort, peerPort, apiPort] = (await freePorts(3)) as [number, number, number];
  const started: Supervised[] = [];
  const stopAll = async () => {
    for (const p of started.reverse()) await stopSupervised(p);
  };

  try {
    log(`starting etcd on 127.0.0.1:${etcdPort}`);
    // prettier-ignore
    const etcd = startSupervised("etcd", etcdBin, [
      "--name=local", `--data-dir=${path.join(dir, "etcd-data")}`,
      `--listen-client-urls=http://127.0.0.1:${etcdPort}`, `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`, `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=local=http://127.0.0.1:${peerPort}`,
      "--unsafe-no-fsync", "--log-level=warn",
    ], dir);
    started.push(etcd);
    await waitFor(
      "etcd /health",
      async () => (await httpGet(`http://127.0.0.1:${etcdPort}/health`)).body.includes('"health":"true"'),
      { alive: etcd },
    );

    log(`starting kube-apiserver on 127.0.0.1:${apiPort}`);
    // prettier-ignore
    const apiserver = startSupervised("kube-apiserver", apiserverBin, [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`, `--secure-port=${apiPort}`,
      `--cert-dir=${path.join(dir, "apiserver-certs")}`,
      `--tls-cert-file=${pki.servingCert}`, `--tls-private-key-file=${pki.servingKey}`,
      `--client-ca-file=${pki.caCert}`,
      `--service-cluster-ip-range=${node?.serviceCidr ?? "10.0.0.0/24"}`,
      "--service-account-issuer=https://kubernetes.default.svc",
      `--service-account-key-file=${pki.serviceAccountPub}`,
      `--service-account-signing-key-file=${pki.serviceAccountKey}`,
      "--authorization-mode=RBAC", "--allow-privileged=true",
      ...(node
        ? [
            "--bind-address=0.0.0.0", `--advertise-address=${node.ip}`,
            // `kubectl logs` and `exec`: the API server reaches the kubelet at the node's address.
            "--kubelet-preferred-address-types=InternalIP",
            `--kubelet-client-certificate=${pki.adminCert}`, `--kubelet-client-key=${pki.adminKey}`,
          ]
        : [
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            // pods/log: the test kubelet serves logs on the Node's InternalIP (loopback).
            "--kubelet-preferred-address-types=InternalIP",
            // The endpoint reconciler refuses a loopback advertise address; nothing here needs it.
            "--endpoint-reconciler-type=none",
          ]),
      "--v=1",
    ], dir);
    started.push(apiserver);
    const server = `https://127.0.0.1:${apiPort}`;
    await waitFor(
      "kube-apiserver /readyz",
      async () => (await httpGet(`${server}/readyz`, tls)).status === 200,
      { intervalMs: 250, alive: apiserver },
    );

    const kubeconfigPath = path.join(dir, "kubeconfig");
    await writeFile(kubeconfigPath, kubeconfigYaml(server, tls), { mode: 0o600 });
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(kubeconfigPath);
    pooledConnections(kubeConfig);

    log("installing Tekton and KubeVela CRDs");
    const crdFiles = [
      ...(await upstreamCrdFiles(tekton)),
      ...(await upstreamCrdFiles(kubevela)),
      ...(opts.extraCrdFiles ?? []),
    ];
    await installCrds(kubeConfig, await readCrds(crdFiles));
    log(`control plane ready: ${kubeconfigPath}`);

    return {
      dir,
      server,
      etcdUrl: `http://127.0.0.1:${etcdPort}`,
      kubeconfigPath,
      kubeConfig,
      pki,
      async stop(stopOpts = {}) {
        await stopAll();
        if (!stopOpts.keepDir) await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
