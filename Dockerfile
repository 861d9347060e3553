# hotline-probe daemon (`probed`) in a container. Building and running: docs/container.md.
#
#   docker build -t hotline-probe .
#   docker run -d --name hotline-probe --read-only --stop-timeout 30 \
#       -v /etc/hotline-probe:/etc/hotline-probe:ro \
#       -v hotline-probe-state:/var/lib/hotline-probe \
#       -p 127.0.0.1:9640:9640 hotline-probe
#
# podman/buildah: build with `--format docker`. Their default image format, OCI, has no
# health check field, so HEALTHCHECK below would be dropped (with a warning) and
# `podman healthcheck run` would find none:
#   buildah build --format docker -t hotline-probe .      (or: podman build --format docker)
#
# Build arguments (all optional; none of them reaches the runtime stage's layers):
#   BASE_IMAGE       the image of both stages; default the official python:3.11-slim-bookworm.
#                    Without a registry: scripts/build-base-image.sh makes
#                    localhost/hotline-probe-base:bookworm (debootstrap), then
#                    --pull=never --build-arg BASE_IMAGE=localhost/hotline-probe-base:bookworm
#   PIP_INDEX_URL    a package index mirror (PEP 503 "simple" URL) instead of PyPI
#   PIP_TRUSTED_HOST a mirror host whose certificate pip does not check (prefer pip-ca)
# Build secret (BuildKit `docker build`, and buildah/podman build, alike):
#   --secret id=pip-ca,src=FILE   a PEM CA bundle pip verifies the index with (a
#                    TLS-intercepting proxy's CA, a mirror's private CA). It replaces pip's
#                    own bundle, so give a complete one (e.g. the host's
#                    /etc/ssl/certs/ca-certificates.crt) unless only the mirror is reached.
#                    A secret is mounted for one RUN and is in no layer, history or cache key.
#
# Mounts (no VOLUME is declared, so nothing anonymous is created behind your back):
#   /etc/hotline-probe      the config, read-only: config.yaml (+ CA bundles, client certs).
#                           Secrets: mount them as files and use ${file:/run/secrets/NAME}.
#   /var/lib/hotline-probe  state ($STATE_DIRECTORY), owned by uid 10001; optional, it
#                           only keeps state across `docker rm`.
#   /var/log/hotline-probe  only if the config turns on a log file (uid 10001 must write).
# The daemon writes nothing else, so --read-only works. Logs and events go to
# stdout/stderr (`docker logs`). Check a config without starting:
#   docker run --rm -v /etc/hotline-probe:/etc/hotline-probe:ro hotline-probe \
#       --config /etc/hotline-probe/config.yaml --check-config

# Debian 12 (bookworm) like the ops hosts; the same image in both stages, so the venv's
# interpreter symlink (python3 -> /usr/local/bin/python3 in the official image,
# /usr/bin/python3 in Debian's) is valid in the runtime stage.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder

# Only this stage sees the index and the CA: the runtime stage copies the venv, nothing else.
ARG PIP_INDEX_URL=""
ARG PIP_TRUSTED_HOST=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

WORKDIR /src
# What goes in is limited by .dockerignore (no .venv, .git, tests, bench, caches).
COPY . .

# Every dependency ships manylinux wheels for CPython 3.11 (aiohttp, uvloop, PyYAML,
# pydantic-core, ...), so no compiler is needed. Non-editable install: the venv holds
# the built wheel's files, not a link back to /src, and pip byte-compiles them here, so
# the read-only runtime starts without compiling. pip reads PIP_INDEX_URL and
# PIP_TRUSTED_HOST from the build arguments' environment (an empty one is unset: PyPI, no
# trusted host), and PIP_CERT only when the pip-ca secret was given. The last step fails
# the build if the `probed` console script is missing or cannot import.
RUN --mount=type=secret,id=pip-ca,target=/run/secrets/pip-ca \
    if [ -z "$PIP_INDEX_URL" ]; then unset PIP_INDEX_URL; fi \
    && if [ -z "$PIP_TRUSTED_HOST" ]; then unset PIP_TRUSTED_HOST; fi \
    && if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && python3 -m venv /opt/hotline-probe \
    && /opt/hotline-probe/bin/pip install --no-cache-dir '.[fast]' \
    && /opt/hotline-probe/bin/probed --help > /dev/null


FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="hotline-probe" \
      org.opencontainers.image.description="Health probes for the Haining 12345 hotline platform's integration links and hosts"

# A fixed, numeric, unprivileged uid/gid (files on mounted volumes can be chowned to it;
# Kubernetes' runAsNonRoot can check it). -l: no huge sparse lastlog for a high uid.
RUN groupadd --system --gid 10001 hotline-probe \
    && useradd --system -l --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin hotline-probe \
    && install -d -m 0755 /etc/hotline-probe \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/hotline-probe \
    && install -d -o 10001 -g 10001 -m 0750 /var/log/hotline-probe

COPY --from=builder /opt/hotline-probe /opt/hotline-probe

# PROBE_LISTEN=0.0.0.0:9640: the daemon's default, 127.0.0.1, is the container's own
# loopback, which neither a published port (-p) nor a Prometheus on the Docker network can
# reach. Inside the container's network namespace every interface is ours; who may reach
# the port from outside is decided by -p (e.g. -p 127.0.0.1:9640:9640) and the network.
ENV PATH=/opt/hotline-probe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STATE_DIRECTORY=/var/lib/hotline-probe \
    PROBE_LISTEN=0.0.0.0:9640

USER 10001:10001
WORKDIR /var/lib/hotline-probe
EXPOSE 9640

# Neither base image has curl: ask /healthz with the venv's Python (200 healthy, 503 not;
# urlopen raises on anything but 2xx, so the exit code is 1). The port follows
# PROBE_LISTEN; proxies from the environment are ignored for this loopback request.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/opt/hotline-probe/bin/python", "-c", "import os, urllib.request as r; port = os.environ.get('PROBE_LISTEN', ':9640').rpartition(':')[2]; r.build_opener(r.ProxyHandler({})).open(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# SIGTERM (Docker's default stop signal): probed sends STOPPING=1 where systemd listens,
# finishes or cancels in-flight checks within a bound and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/hotline-probe/bin/probed"]
CMD ["--config", "/etc/hotline-probe/config.yaml"]
