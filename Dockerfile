# syntax=docker/dockerfile:1
# One image for the enqueuer, the dequeuer and the demo downstream; pick the process with the
# command (default: enqueuer). Node 24 runs the TypeScript sources directly (type stripping), so
# there is no build step and no compiled output: the image holds the sources and production deps.
# Keep the Node major in step with package.json "engines" (test/unit/compose.test.ts checks it).

FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no install-time scripts from dependencies run in the build.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY shared ./shared
COPY enqueuer ./enqueuer
COPY dequeuer ./dequeuer
COPY demo ./demo
COPY config ./config
# The dashboard (/ui/): plain ES modules and CSS, served as they are (no build step).
COPY ui ./ui
# Sources stay root-owned and read-only for the process; it runs as the image's unprivileged user.
USER node
# enqueuer HTTP, dequeuer health/metrics, demo downstream.
EXPOSE 8080 8090 8081
# Node as PID 1 gets SIGTERM directly and main.ts drains on it (compose adds `init: true` so
# zombies are reaped too). Override with `node dequeuer/main.ts` or `node demo/main.ts`.
CMD ["node", "enqueuer/main.ts"]
