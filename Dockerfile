# The cass-cdc-pg image: the operator (`cdc-operator`, the default command) and the replication
# worker (`cdc-worker run --config …`), in a virtualenv at /opt/venv, run as a non-root user.
#
#   docker build -t cass-cdc-pg .      dependencies from PyPI, pinned (with hashes) by uv.lock
#   make image                         buildah on a local Debian base, from build/wheelhouse, no
#                                      registry but Debian's (docs/local-node.md)
#
# Works on python:3.11-slim-bookworm (python3 in /usr/local/bin) and on the local Debian base
# (python3 in /usr/bin): everything goes through `python3 -m venv`, /opt/venv/bin is first on PATH.
ARG BASE=python:3.11-slim-bookworm

# ---- build stage: the locked dependencies in /opt/venv, the project as a wheel in /dist --------
FROM ${BASE} AS build
ARG UV_VERSION=0.13.8
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
# `make wheelhouse` leaves the wheels, requirements.txt (uv export) and uv.lock.sha256 in
# build/wheelhouse. The [e] glob makes it optional: a plain `docker build` has no wheelhouse.
COPY pyproject.toml uv.lock build/wheelhous[e] /wheels/
RUN set -eu; \
    python3 -m venv /opt/venv; \
    cd /wheels; \
    if [ -f requirements.txt ] && [ "$(sha256sum uv.lock | cut -d' ' -f1)" = "$(cat uv.lock.sha256)" ]; then \
        echo "installing from the prepared wheelhouse (no index)"; \
        set -- --no-index --find-links /wheels; \
    else \
        echo "no wheelhouse for this uv.lock: resolving it with uv ${UV_VERSION}, wheels from PyPI"; \
        python3 -m venv /tmp/uv; \
        /tmp/uv/bin/pip install --quiet "uv==${UV_VERSION}"; \
        /tmp/uv/bin/uv export --frozen --no-dev --no-emit-project --quiet -o requirements.txt; \
        rm -rf /tmp/uv; \
    fi; \
    /opt/venv/bin/pip install --quiet --no-deps --require-hashes --only-binary=:all: "$@" \
        -r requirements.txt; \
    python3 -m venv /tmp/backend; \
    /tmp/backend/bin/pip install --quiet "$@" --find-links /wheels/build "hatchling>=1.27"
COPY pyproject.toml README.md /src/
COPY operator/ /src/operator/
COPY worker/ /src/worker/
RUN /tmp/backend/bin/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir /dist /src

# ---- runtime stage ---------------------------------------------------------------------------
FROM ${BASE}
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN groupadd --gid 10001 cdc \
    && useradd --uid 10001 --gid cdc --home-dir /home/cdc --create-home \
        --shell /usr/sbin/nologin cdc
# Dependencies first (a layer that only changes with uv.lock), then the project's wheel.
COPY --from=build /opt/venv /opt/venv
COPY --from=build /dist/ /tmp/dist/
RUN pip install --quiet --no-index --no-deps /tmp/dist/*.whl \
    && rm -rf /tmp/dist \
    && cdc-worker --help >/dev/null && cdc-operator --help >/dev/null
USER 10001:10001
WORKDIR /home/cdc
EXPOSE 8080
CMD ["cdc-operator"]
