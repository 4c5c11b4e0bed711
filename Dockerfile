# One image for every fieldops process; docker-compose.yml picks the command.
# Front-end libraries come from npm at build time (the same package-lock.json as `make web-assets`).
FROM node:20-bookworm-slim AS assets
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund && mkdir -p vendor && cp -r node_modules/leaflet/dist vendor/leaflet

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fieldops ./fieldops
COPY ingest ./ingest
COPY predict ./predict
COPY dispatch ./dispatch
COPY web ./web
COPY --from=assets /build/vendor/leaflet ./web/static/vendor/leaflet
COPY simulators ./simulators
COPY bench ./bench
RUN pip install . && useradd --system --create-home fieldops && mkdir -p /data && chown fieldops /data
USER fieldops
ENV FIELDOPS_DATA_DIR=/data
ENTRYPOINT ["fieldops"]
