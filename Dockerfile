# syntax=docker/dockerfile:1
# One Dockerfile, one target per service:
#
#   docker build --target planner   -t storyboard-planner .     # CPU, no torch
#   docker build --target gateway   -t storyboard-gateway .     # CPU, no torch
#   docker build --target renderer  -t storyboard-renderer .    # CUDA base, torch + diffusers
#   docker build --target validator -t storyboard-validator .   # CUDA base, torch + open_clip
#
# Every image runs as the non-root user 10001 with the same Python (a uv-managed CPython, so the CPU and the CUDA
# images share one interpreter build), installs exactly the pins of its set in deploy/requirements/ (derived from
# requirements.lock by deploy/requirements/compile.sh) and generates the gRPC stubs from protos/ during the build.
# Weights and adapters are mounted at run time (/models, /adapters), never baked in; the hub is offline.

ARG UV_VERSION=0.13.9
ARG PYTHON_VERSION=3.11.18
ARG DEBIAN_IMAGE=debian:bookworm-slim
# The torch of the renderer and validator sets bundles its CUDA 13.2 runtime; the host needs a driver for CUDA 13.
ARG CUDA_IMAGE=nvidia/cuda:13.2.0-base-ubuntu24.04

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---------------------------------------------------------------------------------------------------------------------
# Build stages
# ---------------------------------------------------------------------------------------------------------------------

# The interpreter every image copies, at the same path (/opt/python), so that the virtual environments stay valid.
FROM ${DEBIAN_IMAGE} AS python
ARG PYTHON_VERSION
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_PYTHON=${PYTHON_VERSION} \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1
RUN uv python install ${PYTHON_VERSION}

# The gRPC stubs, generated from protos/ (the committed copies are left out of the build context by .dockerignore),
# then the two local packages built as wheels with the pinned build tools.
FROM python AS wheels
WORKDIR /src
COPY deploy/requirements/build.txt deploy/requirements/build.txt
RUN --mount=type=cache,target=/root/.cache/uv \
    uv venv /opt/build && uv pip sync --python /opt/build/bin/python deploy/requirements/build.txt
COPY protos protos
COPY tools/gen_protos.py tools/gen_protos.py
COPY sdk sdk
COPY pyproject.toml README.md ./
COPY storyboard_common storyboard_common
COPY services services
COPY gateway gateway
COPY storyboard_server storyboard_server
RUN /opt/build/bin/python tools/gen_protos.py \
    && uv build --wheel --out-dir /wheels --build-constraint deploy/requirements/build.txt sdk \
    && uv build --wheel --out-dir /wheels --build-constraint deploy/requirements/build.txt .

# The planner counts prompt tokens with CLIP's BPE vocabulary, which ships inside open_clip; take the file from the
# pinned open_clip wheel instead of installing open_clip (and torch) into the planner image.
FROM python AS clip-vocab
RUN --mount=type=bind,source=deploy/requirements/validator.txt,target=/tmp/validator.txt \
    --mount=type=cache,target=/root/.cache/uv \
    grep '^open-clip-torch==' /tmp/validator.txt >/tmp/open-clip.txt \
    && uv pip install --no-deps --target /tmp/open_clip -r /tmp/open-clip.txt \
    && mkdir -p /clip && cp /tmp/open_clip/open_clip/bpe_simple_vocab_16e6.txt.gz /clip/

# One virtual environment per service: exactly its pinned set, then the two local wheels without dependencies.
FROM python AS venv-planner
RUN --mount=type=bind,source=deploy/requirements/planner.txt,target=/tmp/requirements.txt \
    --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    --mount=type=cache,target=/root/.cache/uv \
    uv venv /opt/venv && uv pip sync --python /opt/venv/bin/python /tmp/requirements.txt \
    && uv pip install --python /opt/venv/bin/python --no-deps /wheels/*.whl

FROM python AS venv-gateway
RUN --mount=type=bind,source=deploy/requirements/gateway.txt,target=/tmp/requirements.txt \
    --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    --mount=type=cache,target=/root/.cache/uv \
    uv venv /opt/venv && uv pip sync --python /opt/venv/bin/python /tmp/requirements.txt \
    && uv pip install --python /opt/venv/bin/python --no-deps /wheels/*.whl

FROM python AS venv-renderer
RUN --mount=type=bind,source=deploy/requirements/renderer.txt,target=/tmp/requirements.txt \
    --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    --mount=type=cache,target=/root/.cache/uv \
    uv venv /opt/venv && uv pip sync --python /opt/venv/bin/python /tmp/requirements.txt \
    && uv pip install --python /opt/venv/bin/python --no-deps /wheels/*.whl

FROM python AS venv-validator
RUN --mount=type=bind,source=deploy/requirements/validator.txt,target=/tmp/requirements.txt \
    --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    --mount=type=cache,target=/root/.cache/uv \
    uv venv /opt/venv && uv pip sync --python /opt/venv/bin/python /tmp/requirements.txt \
    && uv pip install --python /opt/venv/bin/python --no-deps /wheels/*.whl

# ---------------------------------------------------------------------------------------------------------------------
# Runtime bases: the interpreter, CA certificates (the planner calls HTTPS APIs), the user, the data folders
# ---------------------------------------------------------------------------------------------------------------------

# DejaVu Sans: the gateway's storyboard.pdf embeds it for text beyond Latin (Cyrillic, Greek, ...).
FROM ${DEBIAN_IMAGE} AS runtime-cpu
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 storyboard \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/storyboard --shell /usr/sbin/nologin storyboard \
    && mkdir -p /data/outputs /data/jobs /models /adapters && chown -R 10001:10001 /data
COPY --from=python /opt/python /opt/python
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HUB_CACHE=/models/huggingface/hub
WORKDIR /home/storyboard
USER 10001:10001

FROM ${CUDA_IMAGE} AS runtime-gpu
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 storyboard \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/storyboard --shell /usr/sbin/nologin storyboard \
    && mkdir -p /data/outputs /data/jobs /data/compile-cache /models /adapters && chown -R 10001:10001 /data
COPY --from=python /opt/python /opt/python
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HUB_CACHE=/models/huggingface/hub
WORKDIR /home/storyboard
USER 10001:10001

# ---------------------------------------------------------------------------------------------------------------------
# Service images. The commands bind 0.0.0.0 (inside a container, loopback would be unreachable); compose and the
# Kubernetes manifests give the full command line. The standard grpc.health.v1 probe is in every image:
#   python -m storyboard_common.healthcheck 127.0.0.1:PORT storyboard.v1.SERVICE
# ---------------------------------------------------------------------------------------------------------------------

FROM runtime-cpu AS planner
COPY --from=venv-planner /opt/venv /opt/venv
COPY --from=clip-vocab /clip/bpe_simple_vocab_16e6.txt.gz /opt/storyboard/clip/bpe_simple_vocab_16e6.txt.gz
ENV STORYBOARD_PLANNER_CLIP_VOCAB_FILE=/opt/storyboard/clip/bpe_simple_vocab_16e6.txt.gz \
    TRANSFORMERS_VERBOSITY=error
EXPOSE 50052
CMD ["python", "-m", "services.planner", "--host", "0.0.0.0", "--port", "50052"]

FROM runtime-cpu AS gateway
COPY --from=venv-gateway /opt/venv /opt/venv
EXPOSE 50051 8000
CMD ["python", "-m", "gateway", "--host", "0.0.0.0", "--port", "50051", "--http-port", "8000", "--outputs", "/data/outputs"]

FROM runtime-gpu AS renderer
COPY --from=venv-renderer /opt/venv /opt/venv
EXPOSE 50053
CMD ["python", "-m", "services.renderer", "--host", "0.0.0.0", "--port", "50053"]

FROM runtime-gpu AS validator
COPY --from=venv-validator /opt/venv /opt/venv
EXPOSE 50054
CMD ["python", "-m", "services.validator", "--host", "0.0.0.0", "--port", "50054"]
