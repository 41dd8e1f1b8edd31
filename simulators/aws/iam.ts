// IAM inline role policies: what the controller uses to deny one session (PutRolePolicy) and to prune
// the denial later (ListRolePolicies, GetRolePolicy, DeleteRolePolicy). Every call is authorised
// against the caller's policies like any other AWS action, and acts in the caller's own account:
// IAM has no cross-account access, so a role name means the role of that name in that account.
import { authorizeRequest, principalArn } from "./auth.ts";
import type { Principal } from "./auth.ts";
import { PolicyError, packedJson, parsePolicy } from "./policy.ts";
import { principalAccount } from "./state.ts";
import type { PeerState, Role } from "./state.ts";
import { uriEncode } from "./sigv4.ts";
import { AwsError, leaf, node } from "./wire.ts";

/** IAM's aggregate limit for a role's inline policies, counted without white space. */
export const INLINE_POLICY_LIMIT = 10240;
const NAME = /^[\w+=,.@-]+$/;

function validation(field: string, value: string | null, min: number, max: number, pattern?: RegExp): void {
  const problem =
    value === null
      ? `Value null at '${field}' failed to satisfy constraint: Member must not be null`
      : value.length < min
        ? `Value '${value}' at '${field}' failed to satisfy constraint: Member must have length greater than or equal to ${min}`
        : value.length > max
          ? `Value at '${field}' failed to satisfy constraint: Member must have length less than or equal to ${max}`
          : pattern && !pattern.test(value)
            ? `Value '${value}' at '${field}' failed to satisfy constraint: Member must satisfy regular expression pattern: ${pattern.source.slice(1, -1)}`
            : undefined;
  if (problem) throw new AwsError("ValidationError", `1 validation error detected: ${problem}`);
}

function findRole(state: PeerState, accountId: string, name: string): Role {
  for (const role of state.roles.values())
    if (role.accountId === accountId && role.name === name) return role;
  throw new AwsError("NoSuchEntity", `The role with name ${name} cannot be found.`, 404);
}

function authorizeOnRole(state: PeerState, principal: Principal, action: string, role: Role): void {
  const decision = authorizeRequest(state, principal, `iam:${action}`, role.arn);
  if (!decision.allowed) {
    throw new AwsError(
      "AccessDenied",
      `User: ${principalArn(principal)} is not authorized to perform: iam:${action} on resource: role ${role.name} ${decision.because}`,
      403,
    );
  }
}

function inlineSize(role: Role, replacing: string, text: string): number {
  let size = packedJson(text).length;
  for (const [name, policy] of role.inlinePolicies)
    if (name !== replacing) size += packedJson(policy.text).length;
  return size;
}

export const IAM_ACTIONS = new Set([
  "PutRolePolicy",
  "GetRolePolicy",
  "DeleteRolePolicy",
  "ListRolePolicies",
]);

/** Runs one IAM action; returns the `<XResult>` body, or undefined for actions that have none. */
export function handleIam(
  state: PeerState,
  action: string,
  params: URLSearchParams,
  principal: Principal,
): string | undefined {
  if (!IAM_ACTIONS.has(action)) {
    throw new AwsError("InvalidAction", `Could not find operation ${action} for version 2010-05-08`);
  }
  const roleName = params.get("RoleName");
  validation("roleName", roleName, 1, 64, NAME);
  const role = findRole(state, principalAccount(principal, state), roleName ?? "");
  authorizeOnRole(state, principal, action, role);
  const policyName = params.get("PolicyName");

  switch (action) {
    case "PutRolePolicy": {
      const text = params.get("PolicyDocument");
      validation("policyName", policyName, 1, 128, NAME);
      validation("policyDocument", text, 1, 131072);
      if (policyName === null || text === null) throw new Error("unreachable");
      let document;
      try {
        document = parsePolicy(text, "identity");
      } catch (err) {
        if (err instanceof PolicyError) throw new AwsError("MalformedPolicyDocument", err.message);
        throw err;
      }
      if (inlineSize(role, policyName, text) > INLINE_POLICY_LIMIT) {
        throw new AwsError(
          "LimitExceeded",
          `Maximum policy size of ${INLINE_POLICY_LIMIT} bytes exceeded for role ${role.name}`,
          409,
        );
      }
      role.inlinePolicies.set(policyName, { text, document });
      return undefined;
    }
    case "GetRolePolicy":
    case "DeleteRolePolicy": {
      validation("policyName", policyName, 1, 128, NAME);
      const policy = role.inlinePolicies.get(policyName ?? "");
      if (!policy) {
        throw new AwsError(
          "NoSuchEntity",
          `The role policy with name ${policyName ?? ""} cannot be found.`,
          404,
        );
      }
      if (action === "DeleteRolePolicy") {
        role.inlinePolicies.delete(policyName ?? "");
        return undefined;
      }
      // IAM returns the document URL-encoded (RFC 3986); the SDKs hand it over still encoded.
      return [
        leaf("RoleName", role.name),
        leaf("PolicyName", policyName ?? ""),
        leaf("PolicyDocument", uriEncode(policy.text)),
      ].join("");
    }
    case "ListRolePolicies": {
      const maxItems = Number(params.get("MaxItems") ?? "100");
      if (!Number.isInteger(maxItems) || maxItems < 1 || maxItems > 1000) {
        throw new AwsError(
          "ValidationError",
          `1 validation error detected: Value '${params.get("MaxItems") ?? ""}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 1000`,
        );
      }
      const marker = params.get("Marker");
      const names = [...role.inlinePolicies.keys()].sort();
      const start =
        marker === null ? 0 : names.findIndex((n) => n > Buffer.from(marker, "base64url").toString());
      const rest = start < 0 ? [] : names.slice(start);
      const page = rest.slice(0, maxItems);
      const truncated = rest.length > page.length;
      const last = page[page.length - 1];
      return [
        node("PolicyNames", ...page.map((n) => leaf("member", n))),
        leaf("IsTruncated", truncated),
        truncated && last !== undefined ? leaf("Marker", Buffer.from(last).toString("base64url")) : "",
      ].join("");
    }
    default:
      throw new Error(`unhandled IAM action ${action}`);
  }
}
