# syntax=docker/dockerfile:1
# The bridge as a container: `aibridge serve` from the single-file bundle on a slim Node base.
# Build: docker build -t aibridge .   Run: see docs/operations.md#container-and-kubernetes

FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# Only what the server build needs; the agent CLIs and browsers of the test suite stay out.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN node scripts/build.mjs

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    AIBRIDGE_HOST=0.0.0.0 \
    AIBRIDGE_PORT=7410 \
    AIBRIDGE_DATA_DIR=/var/lib/aibridge
WORKDIR /opt/aibridge
# The bundle carries every dependency: no node_modules in the image. dist/aibridge.cjs loads its
# chunks from dist/server/ (what a bridge uses on first use only is in chunks of its own).
COPY --from=build /src/dist/aibridge.cjs ./dist/
COPY --from=build /src/dist/server ./dist/server
COPY --from=build /src/dist/admin ./dist/admin
RUN mkdir -p /var/lib/aibridge && chown node:node /var/lib/aibridge
USER node
VOLUME ["/var/lib/aibridge"]
EXPOSE 7410
# The embedded store replays its journal before the bridge listens: about 30-50 s a million records
# (docs/storage.md). A check that passes during the start period ends it at once.
HEALTHCHECK --interval=15s --timeout=3s --start-period=300s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.AIBRIDGE_PORT||7410)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/opt/aibridge/dist/aibridge.cjs"]
CMD ["serve"]
