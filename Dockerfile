# cartesia-retention: the retention job as a container image.
#
#   docker build -t cartesia-retention:0.1.0 .
#   docker run --rm -v "$PWD/policies:/policies:ro" -v retention-audit:/var/lib/retention \
#     -e CARTESIA_API_KEY cartesia-retention:0.1.0                # dry run (the default CMD)
#   docker run --rm cartesia-retention:0.1.0 demo                 # the tour, no key needed
#
# The base is pinned by digest: an exact Python patch release on Debian 12, and the one
# multi-platform image index published under that tag, so a rebuild gets the same bytes
# even after the tag moves to a newer Debian point release. Both stages use the same
# reference (tests/ops/test_dockerfile.py checks it). To take a newer base, read the
# tag's current digest and replace it on both FROM lines:
#   docker buildx imagetools inspect python:3.11.13-slim-bookworm   # the "Digest:" line
#
# Every Python package comes from requirements/*.txt, exact versions with sha256 hashes
# (pip --require-hashes), made by requirements/update from pyproject.toml.

# Build stage: the wheel, with the locked setuptools and wheel, and the runtime venv.
FROM python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1 AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/build.txt requirements/runtime.txt ./requirements/
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes -r requirements/build.txt
# Only what the package needs; .dockerignore keeps secrets, venvs and audit logs out.
COPY pyproject.toml README.md ./
COPY policies ./policies
COPY retention ./retention
# The runtime venv has no pip, setuptools or wheel: the build venv's pip fills it.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/retention \
 && /opt/build/bin/pip --python /opt/retention/bin/python install \
      --require-hashes --no-deps -r requirements/runtime.txt \
 && /opt/build/bin/pip --python /opt/retention/bin/python install --no-deps /wheels/*.whl \
 && /opt/retention/bin/retention --version

# Runtime stage: the base image and the venv; no compiler, no build tools.
FROM python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1 AS runtime
LABEL org.opencontainers.image.title="cartesia-retention" \
      org.opencontainers.image.description="Enforce data-retention policies on Cartesia voice-agent calls" \
      org.opencontainers.image.licenses="Apache-2.0"

# The base image's own setuptools and wheel go: nothing is built here. A fixed numeric
# UID/GID, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN python -m pip uninstall --yes --quiet setuptools wheel \
 && groupadd --system --gid 10001 retention \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin retention \
 && mkdir -p /policies /var/lib/retention \
 && chown 10001:10001 /var/lib/retention \
 && chmod 0700 /var/lib/retention

COPY --from=build /opt/retention /opt/retention

# Operational defaults; every one can be overridden with -e or a flag. No secrets here:
# the API key comes at run time from CARTESIA_API_KEY or --api-key-file (a mounted secret).
ENV PATH=/opt/retention/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RETENTION_AUDIT_LOG=/var/lib/retention/audit.jsonl \
    RETENTION_GRACE_PERIOD=20

# Policies are mounted read-only at /policies (empty in the image on purpose: a run
# without mounted policies fails with exit 2 instead of applying examples to real data).
# The audit log must outlive the container.
VOLUME ["/var/lib/retention"]
WORKDIR /var/lib/retention
USER 10001:10001

# Exec form: `retention` is PID 1 and receives SIGTERM itself, so a stop or a
# Kubernetes deadline triggers the run's graceful shutdown (exit 5).
ENTRYPOINT ["retention"]
# The default is a dry run: nothing is deleted without an explicit --execute.
CMD ["run", "--policies", "/policies"]
