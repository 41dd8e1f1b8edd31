# The controller image: production dependencies and TypeScript sources, run by Node 24 directly
# (type stripping), on a distroless base with no shell, as a non-root user.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY controller ./controller
COPY tasks ./tasks
USER 65532:65532
ENTRYPOINT ["/nodejs/bin/node", "controller/main.ts"]
