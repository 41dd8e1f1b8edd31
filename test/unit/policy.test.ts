import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import {
  assertedFacts,
  assertedTagPrefix,
  factNames,
  tenantSuppliedFacts,
} from "../../controller/issuer/claims.ts";
import { isRunFailure } from "../../tasks/scoped-step/failure.ts";
import {
  evaluatePolicy,
  globMatch,
  requireGrant,
  selectorMatches,
  shortList,
  type PolicyDecision,
  type PolicyDenial,
  type PolicyGrant,
} from "../../tasks/scoped-step/policy.ts";
import { scopedStepPolicyCrd, scopedStepPolicyCrdYaml } from "../../tasks/scoped-step/policy-crd.ts";
import {
  assertedSubjectFacts,
  checkPolicy,
  reservedTagPrefix,
  subjectPlaceholders,
  tenantSuppliedSubjectFacts,
  type ScopedStepPolicy,
} from "../../tasks/scoped-step/policy-schema.ts";
import { checkTraitProperties, type TraitProperties } from "../../tasks/scoped-step/schema.ts";

const account = "arn:aws:iam::111122223333";
const deployer = `${account}:role/team-a-deployer`;
const traitRef = "the scoped-identity trait on component api of Application payments in namespace team-a";

function policy(name: string, spec: Record<string, unknown>): ScopedStepPolicy {
  const checked = checkPolicy({ metadata: { name }, spec });
  if (!checked.ok) throw new Error(checked.message);
  return checked.value;
}

function trait(properties: Record<string, unknown>): TraitProperties {
  const checked = checkTraitProperties(properties, "trait");
  if (!checked.ok) throw new Error(checked.message);
  return checked.value;
}

const teamA = (name = "team-a-policy", extra: Record<string, unknown> = {}) =>
  policy(name, {
    namespaces: ["team-a"],
    aws: { allowedRoleArns: [`${account}:role/team-a-*`] },
    ...extra,
  });

function decide(
  policies: ScopedStepPolicy[],
  t: TraitProperties,
  namespace = "team-a",
  namespaceLabels: Record<string, string> = {},
): PolicyDecision {
  return evaluatePolicy(policies, { namespace, namespaceLabels, trait: t, traitRef });
}

function granted(decision: PolicyDecision): PolicyGrant {
  assert.ok(decision.allowed, decision.allowed ? "" : `denied: ${decision.reason}: ${decision.message}`);
  return decision;
}

function denied(decision: PolicyDecision, reason: PolicyDenial["reason"]): PolicyDenial {
  assert.ok(
    !decision.allowed,
    `expected ${reason}, but policy ${decision.allowed ? decision.policy : ""} allowed it`,
  );
  assert.equal(decision.reason, reason, decision.message);
  return decision;
}

describe("evaluatePolicy", () => {
  test("allows a trait every rule of a selecting policy allows, with that policy's settings", () => {
    const grant = granted(decide([teamA()], trait({ aws: { roleArn: deployer } })));
    assert.deepEqual(grant, {
      allowed: true,
      policy: "team-a-policy",
      revocation: "secret",
      subjectTemplate: "system:scoped-step:{namespace}:{application}:{component}",
      allowTenantSuppliedSubjectFacts: false,
      audience: "sts.amazonaws.com",
      delivery: "env",
      tokenExpirationSeconds: 600,
      maxTokenLifetimeSeconds: 600,
      sessionDuration: 900,
      maxSessionDuration: 900,
    });
    const custom = teamA("custom", {
      revocation: "deny-policy",
      issuer: "external",
      subjectTemplate: "ci:{namespace}:{customRun}",
      allowTenantSuppliedSubjectFacts: true,
    });
    const g = granted(decide([custom], trait({ aws: { roleArn: deployer } })));
    assert.equal(g.revocation, "deny-policy");
    assert.equal(g.issuer, "external");
    assert.equal(g.subjectTemplate, "ci:{namespace}:{customRun}");
    assert.equal(g.allowTenantSuppliedSubjectFacts, true);
  });

  test("denies a role no pattern matches, naming the role, the namespace, the policy and the allowed roles", () => {
    const other = `${account}:role/team-b-deployer`;
    const d = denied(decide([teamA()], trait({ aws: { roleArn: other } })), "RoleNotAllowed");
    assert.equal(
      d.message,
      `role ${other} is not allowed for namespace team-a by policy team-a-policy; ` +
        `allowed roles: ${account}:role/team-a-*. Set aws.roleArn in ${traitRef} to an allowed role ` +
        `or ask a platform operator to allow it in a ScopedStepPolicy`,
    );
    assert.deepEqual(d.policies, ["team-a-policy"]);
  });

  test("denies any AWS role when the policy has no aws block", () => {
    const d = denied(
      decide([policy("tokens", { namespaces: ["team-a"] })], trait({ aws: { roleArn: deployer } })),
      "RoleNotAllowed",
    );
    assert.match(d.message, /no AWS role is allowed there/);
  });

  test("denies managed session policy ARNs unless a pattern allows each of them", () => {
    const readOnly = "arn:aws:iam::aws:policy/ReadOnlyAccess";
    const admin = "arn:aws:iam::aws:policy/AdministratorAccess";
    const t = trait({ aws: { roleArn: deployer, policyArns: [readOnly, admin] } });
    const none = denied(decide([teamA()], t), "PolicyArnNotAllowed");
    assert.match(
      none.message,
      /managed session policies .*ReadOnlyAccess, .*AdministratorAccess are not allowed/,
    );
    assert.match(none.message, /no managed session policy is allowed there.*Change aws\.policyArns in/);

    const some = teamA("some", { aws: { allowedRoleArns: [deployer], allowedPolicyArns: [readOnly] } });
    const d = denied(decide([some], t), "PolicyArnNotAllowed");
    assert.match(
      d.message,
      /managed session policy arn:aws:iam::aws:policy\/AdministratorAccess is not allowed/,
    );
    assert.match(d.message, /allowed managed policies: arn:aws:iam::aws:policy\/ReadOnlyAccess/);

    granted(decide([some], trait({ aws: { roleArn: deployer, policyArns: [readOnly] } })));
  });

  test("denies an audience the policy does not list", () => {
    const d = denied(
      decide([teamA()], trait({ audience: "vault", aws: { roleArn: deployer } })),
      "AudienceNotAllowed",
    );
    assert.match(
      d.message,
      /^audience vault is not allowed .*; allowed audiences: sts\.amazonaws\.com\. Change audience/,
    );
  });

  test("allows env and file delivery by default but token-only only when listed", () => {
    granted(decide([teamA()], trait({ delivery: "file", aws: { roleArn: deployer } })));
    const tokenOnly = trait({ delivery: "token-only", audience: "vault" });
    const d = denied(
      decide([teamA("p", { tokenOnly: { audiences: ["vault"] } })], tokenOnly),
      "DeliveryNotAllowed",
    );
    assert.match(
      d.message,
      /delivery token-only is not allowed .*allowed delivery modes: env, file\. Change delivery/,
    );
  });

  test("a token-only trait without an aws block is checked only for audience, delivery and lifetime", () => {
    const tokens = policy("tokens", {
      namespaces: ["team-a"],
      deliveryModes: ["token-only"],
      tokenOnly: { audiences: ["vault"] },
      aws: { requireSessionPolicy: true },
    });
    const grant = granted(decide([tokens], trait({ delivery: "token-only", audience: "vault" })));
    assert.equal(grant.sessionDuration, undefined);
    denied(
      decide([tokens], trait({ delivery: "token-only", audience: "vault", tokenExpirationSeconds: 900 })),
      "TokenLifetimeNotAllowed",
    );
  });

  test("token-only needs a tokenOnly rule for the audience, even where deliveryModes lists it", () => {
    const listed = teamA("listed", { deliveryModes: ["env", "token-only"] });
    const sts = trait({ delivery: "token-only", audience: "sts.amazonaws.com" });
    const d = denied(decide([listed], sts), "TokenOnlyAudienceNotAllowed");
    assert.match(
      d.message,
      /^token-only delivery for audience sts\.amazonaws\.com is not allowed .*token-only is allowed for no audience there\. Use delivery env or file/,
    );
    const vault = teamA("vault", { deliveryModes: ["token-only"], tokenOnly: { audiences: ["vault"] } });
    assert.match(
      denied(
        decide([vault], trait({ delivery: "token-only", audience: "gcp" })),
        "TokenOnlyAudienceNotAllowed",
      ).message,
      /token-only is allowed for audiences vault\./,
    );
    const g = granted(decide([vault], trait({ delivery: "token-only", audience: "vault" })));
    assert.equal(g.tokenExpirationSeconds, 300, "a raw token lives 300 s unless the trait asks for less");
    assert.equal(g.maxTokenLifetimeSeconds, 300);
  });

  test("a raw token STS accepts needs the operator's opt-in that names the risk", () => {
    const sts = trait({ delivery: "token-only", audience: "sts.amazonaws.com" });
    const listed = teamA("listed", {
      deliveryModes: ["token-only"],
      tokenOnly: { audiences: ["sts.amazonaws.com"] },
    });
    const d = denied(decide([listed], sts), "UnscopedStsTokenNotAllowed");
    assert.match(
      d.message,
      /could assume roles itself with no session policy, its own duration and no revocation/,
    );
    // An audience the operator registered on the IAM OIDC provider counts as STS's too.
    const custom = teamA("custom", {
      deliveryModes: ["token-only"],
      tokenOnly: { audiences: ["ci"], stsAudiences: ["sts.amazonaws.com", "ci"] },
    });
    denied(decide([custom], trait({ delivery: "token-only", audience: "ci" })), "UnscopedStsTokenNotAllowed");
    const optIn = teamA("opt-in", {
      deliveryModes: ["token-only"],
      tokenOnly: { audiences: ["sts.amazonaws.com"], allowUnscopedUnrevocableStsSessions: true },
    });
    assert.equal(granted(decide([optIn], sts)).tokenExpirationSeconds, 300);
    const long = trait({
      delivery: "token-only",
      audience: "sts.amazonaws.com",
      tokenExpirationSeconds: 3600,
    });
    assert.match(
      denied(decide([optIn], long), "TokenLifetimeNotAllowed").message,
      /token lifetime 3600 s is more than the 300 s allowed for token-only delivery/,
    );
  });

  test("the token lifetime defaults to 600 s, or the policy's maximum when that is lower", () => {
    assert.equal(
      granted(decide([teamA()], trait({ aws: { roleArn: deployer } }))).tokenExpirationSeconds,
      600,
    );
    const short = teamA("short", { maxTokenLifetimeSeconds: 120 });
    assert.equal(granted(decide([short], trait({ aws: { roleArn: deployer } }))).tokenExpirationSeconds, 120);
    const asked = trait({ tokenExpirationSeconds: 90, aws: { roleArn: deployer } });
    assert.equal(granted(decide([short], asked)).tokenExpirationSeconds, 90);
  });

  test("session tags are allowed only by key and value pattern; none by default", () => {
    const tagged = (sessionTags: Record<string, string>, transitiveTagKeys?: string[]) =>
      trait({ aws: { roleArn: deployer, sessionTags, ...(transitiveTagKeys ? { transitiveTagKeys } : {}) } });
    const none = denied(decide([teamA()], tagged({ team: "finance" })), "SessionTagNotAllowed");
    assert.match(
      none.message,
      /^session tag team=finance not allowed .*; no session tag is allowed there\. Change aws\.sessionTags/,
    );
    const tags = teamA("tags", {
      aws: {
        allowedRoleArns: [deployer],
        allowedSessionTags: { team: ["payments"], "cost-center": ["cc-*"] },
        allowedTransitiveTagKeys: ["team"],
      },
    });
    granted(decide([tags], tagged({ team: "payments", "cost-center": "cc-42" })));
    granted(decide([tags], tagged({ Team: "payments" }))); // keys match case-insensitively, as in AWS
    const wrong = denied(
      decide([tags], tagged({ team: "finance", "cost-center": "cc-1" })),
      "SessionTagNotAllowed",
    );
    assert.match(
      wrong.message,
      /session tag team=finance not allowed .*allowed tags: team=payments, cost-center=cc-\*/,
    );
    denied(decide([tags], tagged({ team: "Payments" })), "SessionTagNotAllowed");
    denied(decide([tags], tagged({ owner: "me" })), "SessionTagNotAllowed");
    granted(decide([tags], tagged({ team: "payments" }, ["team"])));
    const transitive = denied(
      decide([tags], tagged({ team: "payments", "cost-center": "cc-1" }, ["cost-center"])),
      "TransitiveTagKeyNotAllowed",
    );
    assert.match(
      transitive.message,
      /transitive tag key cost-center not allowed .*allowed transitive keys: team\./,
    );
  });

  test("a tag under the controller's prefix is never allowed, whatever the policy", () => {
    const t = trait({ aws: { roleArn: deployer, sessionTags: { "scoped-step:namespace": "prod" } } });
    denied(decide([teamA()], t), "SessionTagNotAllowed");
  });

  test("caps the run's retries, 3 by default", () => {
    const t = trait({ aws: { roleArn: deployer } });
    const retrying = (p: ScopedStepPolicy[], retries: number) =>
      evaluatePolicy(p, { namespace: "team-a", namespaceLabels: {}, trait: t, traitRef, retries });
    granted(retrying([teamA()], 3));
    const d = denied(retrying([teamA()], 4), "RetriesNotAllowed");
    assert.match(
      d.message,
      /^retries 4 is more than the 3 allowed for namespace team-a .*Lower the task's retries/,
    );
    granted(retrying([teamA("more", { maxRetries: 10 })], 10));
    denied(retrying([teamA("none", { maxRetries: 0 })], 1), "RetriesNotAllowed");
  });

  test("may forbid podTemplate fields; a step setting none or others is granted", () => {
    const t = trait({ aws: { roleArn: deployer } });
    const placing = (p: ScopedStepPolicy[], podTemplateFields: string[]) =>
      evaluatePolicy(p, { namespace: "team-a", namespaceLabels: {}, trait: t, traitRef, podTemplateFields });
    const strict = teamA("strict", { forbiddenPodTemplateFields: ["nodeSelector", "tolerations"] });
    granted(placing([strict], []));
    granted(placing([strict], ["affinity", "securityContext"]));
    granted(placing([teamA()], ["nodeSelector", "tolerations"])); // nothing is forbidden by default
    const d = denied(placing([strict], ["tolerations", "priorityClassName"]), "PodTemplateFieldNotAllowed");
    assert.match(
      d.message,
      /^podTemplate\.tolerations may not be set for namespace team-a .*remove it from the step/,
    );
    const bad = checkPolicy({
      metadata: { name: "bad" },
      spec: { forbiddenPodTemplateFields: ["hostNetwork"] },
    });
    assert.equal(bad.ok, false, "only podTemplate fields can be named");
  });

  test("denies a token lifetime above the maximum, giving both numbers", () => {
    const d = denied(
      decide([teamA()], trait({ tokenExpirationSeconds: 1200, aws: { roleArn: deployer } })),
      "TokenLifetimeNotAllowed",
    );
    assert.match(
      d.message,
      /token lifetime 1200 s is more than the 600 s allowed .*Lower tokenExpirationSeconds/,
    );
  });

  test("denies a session duration above the maximum, giving requested and maximum", () => {
    const d = denied(
      decide([teamA()], trait({ aws: { roleArn: deployer, sessionDuration: 3600 } })),
      "SessionDurationNotAllowed",
    );
    assert.match(d.message, /session duration 3600 s is more than the 900 s allowed for namespace team-a/);
    assert.match(d.message, /Lower aws\.sessionDuration in the scoped-identity trait/);
    const longer = teamA("longer", { aws: { allowedRoleArns: [deployer], maxSessionDuration: 3600 } });
    granted(decide([longer], trait({ aws: { roleArn: deployer, sessionDuration: 3600 } })));
  });

  test("requires an inline session policy when the policy says so", () => {
    const strict = teamA("strict", { aws: { allowedRoleArns: [deployer], requireSessionPolicy: true } });
    const d = denied(decide([strict], trait({ aws: { roleArn: deployer } })), "SessionPolicyRequired");
    assert.match(d.message, /inline session policy is required .*policy strict\. Add aws\.sessionPolicy/);
    const sessionPolicy = {
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Action: "s3:GetObject", Resource: "*" }],
    };
    granted(decide([strict], trait({ aws: { roleArn: deployer, sessionPolicy } })));
  });

  test("checks rules in order: a trait breaking several is told about the role first", () => {
    const t = trait({
      audience: "x",
      tokenExpirationSeconds: 3600,
      aws: { roleArn: `${account}:role/x-yz` },
    });
    denied(decide([teamA()], t), "RoleNotAllowed");
  });

  test("denies with PolicyNotFound when no policy selects the namespace", () => {
    const d = denied(decide([teamA()], trait({ aws: { roleArn: deployer } }), "team-b"), "PolicyNotFound");
    assert.match(d.message, /no ScopedStepPolicy selects namespace team-b/);
    assert.match(d.message, /a platform operator must create a ScopedStepPolicy selecting it/);
    denied(decide([], trait({ aws: { roleArn: deployer } })), "PolicyNotFound");
  });

  test("when only the second policy allows, the second one grants", () => {
    const narrow = policy("a-narrow", {
      namespaces: ["team-a"],
      aws: { allowedRoleArns: [`${account}:role/ro`] },
    });
    const grant = granted(decide([narrow, teamA("b-wide")], trait({ aws: { roleArn: deployer } })));
    assert.equal(grant.policy, "b-wide");
  });

  test("of several allowing policies the first by name grants, whatever the list order", () => {
    const first = teamA("alpha", { revocation: "deny-policy" });
    const second = teamA("beta");
    const t = trait({ aws: { roleArn: deployer } });
    for (const order of [
      [first, second],
      [second, first],
    ]) {
      const grant = granted(decide(order, t));
      assert.equal(grant.policy, "alpha");
      assert.equal(grant.revocation, "deny-policy");
    }
  });

  test("the denial comes from the policy that came closest to allowing", () => {
    const roles = policy("a-roles", {
      namespaces: ["team-a"],
      aws: { allowedRoleArns: [`${account}:role/ro`] },
    });
    const short = teamA("b-short");
    const d = denied(
      decide([roles, short], trait({ aws: { roleArn: deployer, sessionDuration: 1800 } })),
      "SessionDurationNotAllowed",
    );
    assert.deepEqual(d.policies, ["b-short"]);
    assert.match(d.message, /by policy b-short\./);
  });

  test("a role denied by every policy lists them all and the union of their patterns, capped at five", () => {
    const patterns = Array.from({ length: 7 }, (_, i) => `${account}:role/r${i}`);
    const d = denied(
      decide(
        [
          policy("b", { namespaces: ["team-a"], aws: { allowedRoleArns: patterns.slice(0, 4) } }),
          policy("a", { namespaces: ["team-a"], aws: { allowedRoleArns: patterns.slice(4) } }),
        ],
        trait({ aws: { roleArn: deployer } }),
      ),
      "RoleNotAllowed",
    );
    assert.deepEqual(d.policies, ["a", "b"]);
    assert.match(
      d.message,
      /for namespace team-a by policies a, b; allowed roles: .*r4, .*r5, .*r6, .*r0, .*r1 and 2 more\./,
    );
  });

  test("requireGrant turns a denial into the RunFailure the run ends with", () => {
    const decision = decide([], trait({ aws: { roleArn: deployer } }));
    assert.throws(
      () => requireGrant(decision),
      (err: unknown) => isRunFailure(err) && err.reason === "PolicyNotFound" && /team-a/.test(err.message),
    );
    assert.equal(
      requireGrant(decide([teamA()], trait({ aws: { roleArn: deployer } }))).policy,
      "team-a-policy",
    );
  });
});

describe("namespace selection", () => {
  const t = trait({ aws: { roleArn: deployer } });
  const selecting = (selection: Record<string, unknown>) =>
    policy("p", { ...selection, aws: { allowedRoleArns: [deployer] } });
  const allows = (selection: Record<string, unknown>, labels: Record<string, string>, namespace = "team-a") =>
    decide([selecting(selection)], t, namespace, labels).allowed;

  test("namespaceSelector {} selects every namespace", () => {
    assert.equal(allows({ namespaceSelector: {} }, {}, "anything"), true);
  });

  test("matchLabels needs every label with its value", () => {
    const sel = { namespaceSelector: { matchLabels: { team: "a", env: "prod" } } };
    assert.equal(allows(sel, { team: "a", env: "prod", other: "x" }), true);
    assert.equal(allows(sel, { team: "a" }), false);
    assert.equal(allows(sel, { team: "a", env: "dev" }), false);
  });

  test("matchExpressions operators follow Kubernetes semantics", () => {
    const expr = (operator: string, values?: string[]) => ({
      namespaceSelector: { matchExpressions: [{ key: "team", operator, ...(values ? { values } : {}) }] },
    });
    assert.equal(allows(expr("In", ["a", "b"]), { team: "b" }), true);
    assert.equal(allows(expr("In", ["a", "b"]), { team: "c" }), false);
    assert.equal(allows(expr("In", ["a", "b"]), {}), false);
    assert.equal(allows(expr("NotIn", ["a"]), { team: "b" }), true);
    assert.equal(allows(expr("NotIn", ["a"]), {}), true, "NotIn matches a namespace without the label");
    assert.equal(allows(expr("NotIn", ["a"]), { team: "a" }), false);
    assert.equal(allows(expr("Exists"), { team: "" }), true);
    assert.equal(allows(expr("Exists"), {}), false);
    assert.equal(allows(expr("DoesNotExist"), {}), true);
    assert.equal(allows(expr("DoesNotExist"), { team: "a" }), false);
    assert.equal(
      selectorMatches(
        {
          matchLabels: { env: "prod" },
          matchExpressions: [{ key: "team", operator: "In", values: ["a"] }],
        },
        { env: "prod", team: "b" },
      ),
      false,
      "matchLabels and matchExpressions must all match",
    );
  });

  test("namespaces lists names; with a selector both must match", () => {
    assert.equal(allows({ namespaces: ["team-a", "team-b"] }, {}, "team-b"), true);
    assert.equal(allows({ namespaces: ["team-a"] }, {}, "team-ab"), false);
    const both = { namespaces: ["team-a"], namespaceSelector: { matchLabels: { tier: "trusted" } } };
    assert.equal(allows(both, { tier: "trusted" }), true);
    assert.equal(allows(both, {}), false);
    assert.equal(allows(both, { tier: "trusted" }, "team-b"), false);
  });
});

describe("globMatch", () => {
  test("matches the whole ARN, literally apart from * and ?", () => {
    assert.equal(globMatch(`${account}:role/team-a-*`, deployer), true);
    assert.equal(globMatch(`${account}:role/team-a-*`, `${deployer}x`), true);
    assert.equal(globMatch(`${account}:role/team-a`, deployer), false, "anchored at the end");
    assert.equal(globMatch(`role/team-a-*`, deployer), false, "anchored at the start");
    assert.equal(globMatch("*", ""), true);
    assert.equal(globMatch("", ""), true);
    assert.equal(globMatch("", "x"), false);
    assert.equal(globMatch("a**b", "ab"), true);
  });

  test("* crosses / and :, so operators must write patterns with that in mind", () => {
    // Role paths are part of the ARN: team-* also matches roles under a team-x/ path.
    assert.equal(globMatch(`${account}:role/team-*`, `${account}:role/team-a/../admin`), true);
    assert.equal(globMatch(`${account}:role/team-*`, `${account}:role/team-x/admin`), true);
    assert.equal(
      globMatch("arn:aws:iam::*:role/deployer", "arn:aws:iam::111122223333:role/x:role/deployer"),
      true,
    );
    assert.equal(
      globMatch("arn:aws:iam::*:role/deployer", "arn:aws:iam::111122223333:role/deployer2"),
      false,
    );
  });

  test("? is exactly one character and . is literal", () => {
    assert.equal(globMatch("role/team-?", "role/team-a"), true);
    assert.equal(globMatch("role/team-?", "role/team-"), false);
    assert.equal(globMatch("role/team-?", "role/team-ab"), false);
    assert.equal(globMatch("role/a.b", "role/a.b"), true);
    assert.equal(globMatch("role/a.b", "role/axb"), false, ". is not a regex wildcard");
    assert.equal(globMatch("role/(a|b)+", "role/a"), false, "no regex syntax at all");
    assert.equal(globMatch("role/[ab]", "role/[ab]"), true);
  });

  test("is case-sensitive, like IAM's ArnLike", () => {
    assert.equal(globMatch("arn:aws:iam::1:role/Deployer", "arn:aws:iam::1:role/deployer"), false);
  });

  test("stays fast on patterns that make regex engines backtrack", () => {
    const started = performance.now();
    assert.equal(globMatch(`${"*a".repeat(40)}b`, "a".repeat(2000)), false);
    assert.ok(performance.now() - started < 1000);
  });
});

describe("ScopedStepPolicy objects", () => {
  const invalid = (spec: Record<string, unknown>): string => {
    const checked = checkPolicy({ metadata: { name: "bad" }, spec });
    assert.ok(!checked.ok, "expected the policy to be invalid");
    return checked.message;
  };

  test("defaults fill what the operator leaves out", () => {
    const p = policy("p", { namespaceSelector: {}, aws: {} });
    assert.deepEqual(p.spec, {
      namespaceSelector: {},
      audiences: ["sts.amazonaws.com"],
      maxTokenLifetimeSeconds: 600,
      deliveryModes: ["env", "file"],
      aws: {
        allowedRoleArns: [],
        allowedPolicyArns: [],
        maxSessionDuration: 900,
        requireSessionPolicy: false,
        allowedSessionTags: {},
        allowedTransitiveTagKeys: [],
      },
      revocation: "secret",
      subjectTemplate: "system:scoped-step:{namespace}:{application}:{component}",
      allowTenantSuppliedSubjectFacts: false,
      maxRetries: 3,
      forbiddenPodTemplateFields: [],
    });
    const tokens = policy("t", { namespaceSelector: {}, tokenOnly: { audiences: ["vault"] } });
    assert.deepEqual(tokens.spec.tokenOnly, {
      audiences: ["vault"],
      maxTokenLifetimeSeconds: 300,
      stsAudiences: ["sts.amazonaws.com"],
      allowUnscopedUnrevocableStsSessions: false,
    });
  });

  test("a subject template using tenant-supplied facts needs the opt-in", () => {
    for (const fact of ["customRun", "pipelineRun", "pipelineTask", "serviceAccount"]) {
      const message = invalid({ namespaceSelector: {}, subjectTemplate: `ci:{namespace}:{${fact}}` });
      assert.match(message, new RegExp(`uses \\{${fact}\\}, which the run's author chooses freely`));
      assert.match(message, /or set allowTenantSuppliedSubjectFacts: true/);
    }
    const asserted = "ci:{namespace}:{namespaceUid}:{customRunUid}:{application}:{component}";
    assert.equal(
      policy("p", { namespaceSelector: {}, subjectTemplate: asserted }).spec.subjectTemplate,
      asserted,
    );
    const optIn = {
      namespaceSelector: {},
      subjectTemplate: "ci:{pipelineRun}",
      allowTenantSuppliedSubjectFacts: true,
    };
    assert.equal(policy("p", optIn).spec.subjectTemplate, "ci:{pipelineRun}");
  });

  test("a policy cannot allow the controller's own session tags", () => {
    assert.match(
      invalid({ namespaceSelector: {}, aws: { allowedSessionTags: { "Scoped-Step:namespace": ["*"] } } }),
      /allowedSessionTags lists Scoped-Step:namespace: keys under scoped-step: are set by the controller only/,
    );
  });

  test("a policy selecting no namespace is invalid, not a policy for everyone", () => {
    assert.match(invalid({ aws: { allowedRoleArns: [deployer] } }), /selects no namespace/);
    assert.match(invalid({ namespaces: [] }), /spec\.namespaces: must NOT have fewer than 1 items/);
  });

  test("selector expressions need values for In and NotIn and take none for Exists and DoesNotExist", () => {
    const expr = (e: Record<string, unknown>) => ({ namespaceSelector: { matchExpressions: [e] } });
    assert.match(
      invalid(expr({ key: "team", operator: "In" })),
      /matchExpressions\.0: must have required property 'values'/,
    );
    assert.match(
      invalid(expr({ key: "team", operator: "NotIn", values: [] })),
      /must NOT have fewer than 1 items/,
    );
    assert.match(
      invalid(expr({ key: "team", operator: "Exists", values: ["a"] })),
      /matchExpressions\.0\.values: must NOT have more than 0 items/,
    );
    assert.doesNotMatch(invalid(expr({ key: "team", operator: "Exists", values: ["a"] })), /"then"|"else"/);
  });

  test("bad values are refused with the field named", () => {
    assert.match(
      invalid({ namespaceSelector: {}, revocation: "never" }),
      /spec\.revocation: must be one of secret, deny-policy/,
    );
    assert.match(
      invalid({ namespaceSelector: {}, aws: { maxSessionDuration: 60 } }),
      /spec\.aws\.maxSessionDuration/,
    );
    assert.match(
      invalid({ namespaceSelector: {}, aws: { allowedRoleArns: ["*"] } }),
      /allowedRoleArns\.0: must match pattern/,
    );
    assert.match(invalid({ namespaceSelector: {}, subjectTemplate: "x:{secret}" }), /spec\.subjectTemplate/);
    assert.match(
      invalid({ namespaceSelector: {}, deliveryModes: ["ftp"] }),
      /deliveryModes\.0: must be one of/,
    );
    assert.match(invalid({ namespaceSelector: {}, roles: [] }), /unknown field "roles"/);
    assert.equal(checkPolicy({ spec: { namespaceSelector: {} } }).ok, false, "a name is required");
  });

  test("subject templates may use exactly the facts the issuer knows, split the same way", () => {
    assert.deepEqual([...subjectPlaceholders].sort(), [...factNames].sort());
    assert.deepEqual([...assertedSubjectFacts].sort(), [...assertedFacts].sort());
    assert.deepEqual([...tenantSuppliedSubjectFacts].sort(), [...tenantSuppliedFacts].sort());
    assert.equal(reservedTagPrefix, assertedTagPrefix);
    const all = subjectPlaceholders.map((p) => `{${p}}`).join(":");
    const spec = { namespaceSelector: {}, subjectTemplate: all, allowTenantSuppliedSubjectFacts: true };
    assert.equal(policy("p", spec).spec.subjectTemplate, all);
  });

  test("the committed ScopedStepPolicy CRD is generated from the current schema", async () => {
    const committed = await readFile(
      new URL("../../catalog/crds/scopedsteppolicy.yaml", import.meta.url),
      "utf8",
    );
    assert.equal(committed, scopedStepPolicyCrdYaml(), "run `make generate`");
  });

  test("the CRD is cluster-scoped, has a status subresource and no keyword the API server cannot read", () => {
    const crd = scopedStepPolicyCrd() as { spec: { scope: string; names: { shortNames: string[] } } };
    assert.equal(crd.spec.scope, "Cluster");
    assert.deepEqual(crd.spec.names.shortNames, ["ssp"]);
    const yaml = scopedStepPolicyCrdYaml();
    assert.match(yaml, /subresources:\n\s+status: \{\}/);
    assert.doesNotMatch(yaml, /^\s+(if|then|else|additionalProperties: false):/m);
  });
});

test("shortList caps a list at five and says how many more", () => {
  assert.equal(shortList(["a", "b"]), "a, b");
  assert.equal(shortList(["a", "a", "b"]), "a, b");
  assert.equal(shortList(["1", "2", "3", "4", "5", "6", "7"]), "1, 2, 3, 4, 5 and 2 more");
});
