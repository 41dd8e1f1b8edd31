// The OIDC issuer: the controller signs each step's token itself and AWS (or any OIDC verifier)
// checks it against the discovery document and JWKS published at the issuer URL.
//
// Token claims: iss, sub (from the subject template), aud, iat, nbf (iat - 5 s), exp, jti; the
// asserted facts as flat claims: namespace, namespaceUid, customRunUid, application, component;
// the tenant-supplied ones under "unverified": { customRun, pipelineRun, pipelineTask,
// serviceAccount } (each only when known). AWS-specific: "https://aws.amazon.com/tags" =
// { principal_tags: { K: [V] }, transitive_tag_keys? }, always with the asserted scoped-step:* tags,
// and "https://aws.amazon.com/source_identity".
//
// With the KMS key store (kms.ts, kms-rotation.ts) the private keys stay in AWS KMS: the set lives
// in a ConfigMap of the same name and holds, per key, its KMS key ARN and public JWK instead.
//
// Keys live in one Opaque Secret (default scoped-step-signing-keys, label
// app.kubernetes.io/part-of=scoped-step) under data key keys.json:
//   { "version": 1, "keys": [{ "kid", "alg", "state": "next"|"active"|"retired", "createdAt",
//     "activatedAt"?, "retiredAt"?, "privateJwk" (next, active) | "publicJwk" (retired) }] }
// kid is the RFC 7638 thumbprint. Exactly one key is active; a "next" key is already published. A
// key that stops signing loses its private half in the same write that retires it.
//
// The engine calls rotateIfDue() and reload() on a timer (every minute is plenty: keep the period
// below clockSkewSeconds), exports activeKeyActivatedAt() as a metric and mounts handler.
export { createIssuer, type Issuer, type IssuerOptions, type RotationResult } from "./issuer.ts";
export type { TokenRequest, IssuedToken } from "./tokens.ts";
export {
  ClaimError,
  IssuerConfigError,
  renderSubject,
  defaultSubjectTemplate,
  limits as claimLimits,
  type ClaimErrorReason,
  type RunFacts,
} from "./claims.ts";
export { checkIssuerUrl, writeDocuments, type DiscoveryDocument, type Jwks } from "./documents.ts";
export { memoryKeyStore, defaultSecretName, type KeyStore } from "./key-store.ts";
export type { SigningAlgorithm, PublicJwk } from "./keys.ts";
export { KmsKeyError } from "./kms.ts";
