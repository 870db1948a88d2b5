# The hub's container image for deploy/compose.yaml. Build from the repository
# root: docker build -f deploy/hub.Dockerfile -t goldenhour-hub .
# (deploy/hub.Dockerfile.dockerignore keeps .venv, data and models out of the
# build context). Runs `goldenhour hub serve` as an unprivileged user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --home-dir /var/lib/goldenhour-hub --create-home \
        --shell /usr/sbin/nologin goldenhour

WORKDIR /opt/goldenhour
COPY pyproject.toml README.md LICENSE ./
COPY shared ./shared
COPY hospital_hub ./hospital_hub
RUN pip install ".[hub]"

USER goldenhour
WORKDIR /var/lib/goldenhour-hub
EXPOSE 8000
ENV GOLDENHOUR_HUB_HTTP_HOST=0.0.0.0 \
    GOLDENHOUR_HUB_HTTP_PORT=8000 \
    GOLDENHOUR_HUB_LOG_FORMAT=json
# Liveness for plain `docker run`; compose checks readiness instead.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "shared.healthcheck", "hub", "--path", "/health/live"]
CMD ["goldenhour", "hub", "serve"]
