// A provider that mints nothing: the step runs with no cloud credentials. Used where no cloud is
// configured, and as the baseline the real providers are measured against.
import type { CredentialProvider } from "./types.ts";

export const noopProvider: CredentialProvider = {
  name: "none",
  intent: () => ({}),
  lifetimeSeconds: () => 0,
  mint: async (_facts, _grant, recorded) => {
    await recorded;
    return { results: {}, secretData: {}, mount: { secretEnv: {}, env: {}, files: {} } };
  },
  describe: () => "",
  revoke: () => Promise.resolve({ method: "none" }),
};
