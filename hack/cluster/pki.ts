// Certificates for one local control plane: a CA, the API server's serving certificate, an admin
// client certificate (system:masters) and the service-account signing key. Made with openssl.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";

const run = promisify(execFile);

export interface Pki {
  caCert: string;
  caKey: string;
  servingCert: string;
  servingKey: string;
  adminCert: string;
  adminKey: string;
  serviceAccountKey: string;
  serviceAccountPub: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await run("openssl", args, { cwd });
}

async function signedCert(
  dir: string,
  name: string,
  subject: string,
  extensions: string,
): Promise<{ cert: string; key: string }> {
  const ext = path.join(dir, `${name}.ext`);
  await writeFile(ext, extensions);
  await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}.key`], dir);
  await openssl(["req", "-new", "-key", `${name}.key`, "-subj", subject, "-out", `${name}.csr`], dir);
  await openssl(
    // prettier-ignore
    ["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
     "-days", "30", "-extfile", ext, "-out", `${name}.crt`],
    dir,
  );
  return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
}

/** `extraSans`: more subjectAltName entries for the API server, e.g. `IP:10.0.0.1`. */
export async function createPki(dir: string, extraSans: string[] = []): Promise<Pki> {
  await mkdir(dir, { recursive: true });
  await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"], dir);
  await openssl(
    // prettier-ignore
    ["req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=scoped-step-local-ca", "-days", "30",
     "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
     "-out", "ca.crt"],
    dir,
  );
  const serving = await signedCert(
    dir,
    "apiserver",
    "/CN=kube-apiserver",
    `subjectAltName=${["IP:127.0.0.1", "DNS:localhost", ...extraSans].join(",")}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n`,
  );
  const admin = await signedCert(
    dir,
    "admin",
    "/O=system:masters/CN=scoped-step-admin",
    "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
  );
  await openssl(["genrsa", "-out", "sa.key", "2048"], dir);
  await openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir);
  return {
    caCert: path.join(dir, "ca.crt"),
    caKey: path.join(dir, "ca.key"),
    servingCert: serving.cert,
    servingKey: serving.key,
    adminCert: admin.cert,
    adminKey: admin.key,
    serviceAccountKey: path.join(dir, "sa.key"),
    serviceAccountPub: path.join(dir, "sa.pub"),
  };
}
