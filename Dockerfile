# ssehub, the Server-Sent Events hub, as a container image.
#
#   docker build -t ssehub .
#   docker run --rm -p 8080:8080 ssehub
#
# Settings come from HUB_* environment variables over /etc/ssehub/config.toml (mount your own
# there). See docs/deployment/container.md.

# The base is a build argument so it can be swapped: a digest-pinned python image, a mirror, or
# the local Debian base scripts/check-container builds with. Both stages must use the same base,
# because the virtual environment links to the base's python. Bookworm pinned: the Debian
# release does not change under a rebuild (python:3.12-slim moves to each new Debian release).
ARG BASE_IMAGE=python:3.12-slim-bookworm

# -- build: install the hub and its dependencies into a virtual environment --------------------
FROM ${BASE_IMAGE} AS build

SHELL ["/bin/sh", "-eu", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src

# Dependencies first, from pyproject.toml alone, so a change to the hub's code reuses this layer.
# A build behind a TLS-inspecting proxy mounts the host's CA bundle over the image's
# (-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro): pip's own
# bundle would not know that CA, so pip uses the system bundle whenever there is one.
COPY pyproject.toml ./
RUN if [ -s /etc/ssl/certs/ca-certificates.crt ]; then \
      export PIP_CERT=/etc/ssl/certs/ca-certificates.crt; \
    fi; \
    python3 -m venv /opt/ssehub; \
    python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
print(*p["build-system"]["requires"], *p["project"]["dependencies"], \
*p["project"]["optional-dependencies"]["speed"], \
*p["project"]["optional-dependencies"]["nats"], sep="\n")' > requirements.txt; \
    /opt/ssehub/bin/pip install --no-cache-dir --requirement requirements.txt

# The hub itself, with the build backend installed above: no network needed from here. Then the
# installers go: the final image runs the hub, it never installs anything.
COPY hub/ hub/
RUN /opt/ssehub/bin/pip install --no-cache-dir --no-deps --no-build-isolation . ; \
    /opt/ssehub/bin/pip uninstall --yes --quiet setuptools pip

# -- final: the virtual environment, the config, the page; no compilers, no installers ---------
FROM ${BASE_IMAGE}

# VERSION and REVISION are filled by the build (scripts/check-container, CI): a default here
# would go stale.
ARG BASE_IMAGE
ARG VERSION=""
ARG REVISION=""
LABEL org.opencontainers.image.title="ssehub" \
      org.opencontainers.image.description="Server-Sent Events broadcast hub: channels, clock channels, HTTP publish, resume from history" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# tini as PID 1 forwards signals to the hub: the kernel drops a signal sent to a PID 1 that has
# no handler yet, so a Python PID 1 would miss a SIGTERM that arrives during its start-up.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

# A fixed, numeric non-root id, so runAsNonRoot-style checks can verify it without /etc/passwd.
RUN groupadd --gid 10001 ssehub \
    && useradd --uid 10001 --gid ssehub --no-create-home --no-log-init --home-dir /nonexistent \
      --shell /usr/sbin/nologin ssehub

# Owned by root and read-only to the hub: it writes nothing, so --read-only works.
COPY --from=build /opt/ssehub /opt/ssehub
COPY config.toml /etc/ssehub/config.toml
COPY web/ /app/web/

# HUB_HOST and HUB_PORT beat the config file: in a container the hub listens on all interfaces,
# and the health check below follows HUB_PORT. Time zones come from the tzdata package in the
# venv, so every IANA zone works whatever the base has in /usr/share/zoneinfo.
ENV PATH=/opt/ssehub/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HUB_CONFIG=/etc/ssehub/config.toml \
    HUB_WEB_ROOT=/app/web \
    HUB_HOST=0.0.0.0 \
    HUB_PORT=8080

WORKDIR /app
USER 10001:10001
EXPOSE 8080

# Python's standard library only (no curl in the image). 0.0.0.0 and :: are reached on loopback.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-I", "-c", "import os, http.client; host = os.environ.get('HUB_HOST') or '0.0.0.0'; host = {'0.0.0.0': '127.0.0.1', '::': '::1'}.get(host, host); connection = http.client.HTTPConnection(host, int(os.environ.get('HUB_PORT') or 8080), timeout=4); connection.request('GET', '/healthz'); raise SystemExit(connection.getresponse().status != 200)"]

# Exec form, through tini: SIGTERM reaches the hub, which ends every stream and exits 0.
ENTRYPOINT ["/usr/bin/tini", "--", "python", "-m", "hub"]
CMD ["serve"]
