# syntax=docker/dockerfile:1
# One image for every Storyboard service; docker-compose.yml picks the service by its command.
# Weights, adapters and outputs are mounted at run time, never baked in.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
# Dependencies first, so that code changes do not reinstall them.
COPY requirements.lock constraints.txt ./
COPY sdk/pyproject.toml sdk/pyproject.toml
RUN mkdir -p sdk/src/storyboard && uv venv /opt/venv \
    && uv pip sync --python /opt/venv/bin/python requirements.lock
COPY . .
RUN uv pip install --python /opt/venv/bin/python --no-deps ./sdk . \
    && /opt/venv/bin/python tools/gen_protos.py --check

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
RUN useradd --create-home --uid 10001 storyboard && mkdir -p /data && chown storyboard /data
COPY --from=build /opt/venv /opt/venv
USER storyboard
WORKDIR /home/storyboard
