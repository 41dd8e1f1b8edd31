// Kubernetes Events on CustomRuns. Fire and forget: an event that cannot be written is logged,
// never allowed to fail a reconcile pass. Messages come from the lifecycle and hold no secrets.
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { resourcePath, type Kube } from "./kube-client.ts";
import type { EventPort } from "../tasks/scoped-step/ports.ts";

const events = { apiVersion: "v1", plural: "events" };

export function kubeEvents(kube: Kube, component: string, host: string, log: Logger): EventPort {
  return {
    emit(run, type, reason, message) {
      const now = new Date();
      const namespace = run.metadata.namespace ?? "";
      const body = {
        metadata: { name: `${run.metadata.name ?? "run"}.${randomBytes(8).toString("hex")}`, namespace },
        involvedObject: {
          apiVersion: run.apiVersion,
          kind: run.kind,
          name: run.metadata.name ?? "",
          namespace,
          uid: run.metadata.uid ?? "",
          resourceVersion: run.metadata.resourceVersion ?? "",
        },
        type,
        reason,
        message: message.slice(0, 1024),
        source: { component, host },
        reportingComponent: component,
        reportingInstance: host,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      };
      kube.request("POST", resourcePath(events, namespace), { body }).catch((err: unknown) => {
        log.warn({ err, reason, namespace, name: run.metadata.name }, "could not write event");
      });
    },
  };
}
