# The controller image: production dependencies and TypeScript sources, run by Node 24 directly
# (type stripping, no build step), on a distroless base with no shell, as a non-root user. The root
# filesystem can be read-only: the controller writes nothing to disk.
# Expected size: about 190 MB (distroless Node 24 base ~130 MB, pruned dependencies ~60 MB).
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && find node_modules -type f \( -name "*.map" -o -name "*.d.ts" -o -name "*.d.mts" -o -name "*.d.cts" -o -name "*.md" \) -delete \
 && rm -rf node_modules/@types

FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY controller ./controller
COPY tasks ./tasks
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/nodejs/bin/node", "controller/main.ts"]
