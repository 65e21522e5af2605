# syntax=docker/dockerfile:1
# The tierstream node: `tierstream` is the entrypoint, `node --config ...` the default command.
#   docker build -t registry.example.net/tierstream:0.1.0 .
# The build stage compiles the native fan-out (media/_fanout.c, against OpenSSL's libcrypto);
# every other dependency installs from a wheel. The final stage has no compiler; the base image's
# own OpenSSL runtime (libssl3, which Python itself needs) is all the fan-out links.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Debian's current security-patched versions, not pinned ones that leave the mirror.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY cluster ./cluster
COPY media ./media
COPY migrations ./migrations
COPY conf ./conf
# A virtual environment to copy whole into the final stage; no build tools go with it.
RUN python -m venv /opt/tierstream \
    && /opt/tierstream/bin/pip install --no-cache-dir . \
    && /opt/tierstream/bin/pip uninstall --yes pip setuptools \
    && sed 's/^http\.host=.*/http.host=0.0.0.0/' conf/red5.properties > /opt/red5.properties

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="tierstream" \
      org.opencontainers.image.description="Multi-level origin/edge WebRTC live-streaming node" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/tierstream/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed non-root uid/gid (the Helm chart runs as 10001 with fsGroup 10001).
RUN groupadd --system --gid 10001 tierstream \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tierstream \
       --shell /usr/sbin/nologin tierstream \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/tierstream
COPY --from=build /opt/tierstream /opt/tierstream
# The documented defaults, listening on every interface: `docker run` alone gives one node on the
# embedded registry. The chart replaces this file with its own rendering on the pod's volume.
COPY --from=build --chown=10001:10001 /opt/red5.properties /var/lib/tierstream/red5.properties
USER 10001:10001
WORKDIR /var/lib/tierstream
EXPOSE 5080/tcp
# Docker's own health check (Kubernetes uses the chart's probes instead): the node answers /healthz.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('TIERSTREAM_HTTP_PORT', '5080') + '/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["tierstream"]
CMD ["node", "--config", "/var/lib/tierstream/red5.properties"]
