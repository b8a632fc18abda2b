# One image for every meshprov role (node, validator, aggregator, watcher, index follower, dashboard, deployer),
# built from the same pyproject.toml as the source tree.
#   docker build -t meshprov .                              # all roles
#   docker build --build-arg EXTRAS=dashboard -t meshprov-audit .   # auditor/dashboard only: no torch
FROM python:3.11-slim AS base

ARG EXTRAS=worker,node,dashboard
# Point at a CPU-only wheel index to keep the image small; empty uses PyPI's default build.
ARG TORCH_INDEX_URL=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MESHPROV_DATA_DIR=/data

RUN useradd --create-home --uid 10001 meshprov && mkdir -p /data && chown meshprov /data
WORKDIR /app

# Dependencies first, so source edits do not re-download them.
COPY pyproject.toml README.md ./
RUN case ",$EXTRAS," in *,node,*) \
      if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0; \
      else pip install torch==2.13.0; fi ;; esac
COPY ledger ./ledger
COPY worker ./worker
COPY node ./node
RUN pip install ".[${EXTRAS}]" && meshprov --version

USER meshprov
VOLUME ["/data"]
ENTRYPOINT ["meshprov"]
CMD ["--help"]
