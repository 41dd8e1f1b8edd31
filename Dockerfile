# The controller image: production dependencies and the controller's sources as JavaScript (types
# stripped by Node's own stripTypeScriptTypes, hack/strip-types.ts: running the .ts files directly
# would keep Node's type stripper loaded, about 30 MiB of resident memory), run by Node 24 on a
# distroless base with no shell, as a non-root user. The root filesystem can be read-only: the
# controller writes nothing to disk.
# Size: 191 MB, measured with the bases hack/cluster/controller-image.ts assembles (Node 24 and
# glibc ~130 MB, pruned dependencies ~60 MB); with the distroless base not measured, since no
# registry is reachable where it is built.
#
# The base images are build args, for builds where no registry is reachable: BUILD_IMAGE needs
# node and npm on PATH and a shell; RUNTIME_IMAGE needs node at /nodejs/bin/node and the user 65532.
# hack/cluster/controller-image.ts builds with bases assembled from Debian's packages.
ARG BUILD_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot

FROM ${BUILD_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && find node_modules -type f \( -name "*.map" -o -name "*.d.ts" -o -name "*.d.mts" -o -name "*.d.cts" -o -name "*.md" \) -exec rm -f {} + \
 && rm -rf node_modules/@types

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY package.json ./
COPY hack/strip-types.ts ./hack/
COPY controller ./controller
COPY tasks ./tasks
RUN node --disable-warning=ExperimentalWarning hack/strip-types.ts /app

FROM ${RUNTIME_IMAGE}
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app ./
USER 65532:65532
EXPOSE 8080
# A young generation of 1 MiB semi-spaces: measured 15 MiB less resident memory idle and 8 MiB
# less at peak, for no measurable CPU per run (bench/memory.ts). An old generation of a quarter of
# the container's memory limit (128 MiB of the release's 512 Mi; Node's own default is half):
# what is cached is the runs in flight, so the live heap stays small, and V8 collects before it
# grows into the headroom a larger limit gives it.
ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=1", "--max-old-space-size-percentage=25", "controller/main.js"]
