# syntax=docker/dockerfile:1
#
# trainhook: Node 24 (LTS) service + Python 3.11 training worker (Ultralytics) in one image.
#
#   docker build -t trainhook .
#   docker run --gpus all --shm-size=8g -p 8000:8000 -v trainhook-data:/var/lib/trainhook \
#     -e API_TOKEN=... --stop-timeout 60 trainhook
#
# GPU: nothing CUDA is installed from the base image. torch 2.14.1 from PyPI (Linux x86_64) pulls
# in the CUDA 13 runtime as pip wheels (nvidia-cublas, nvidia-cudnn-cu13, ... pinned in
# worker/engines/*/requirements.txt), so the image needs only the host's NVIDIA driver (a release that
# supports CUDA 13, i.e. R580 or newer) and the NVIDIA Container Toolkit: run with `--gpus all`
# (compose: deploy.resources.reservations.devices). The toolkit also mounts nvidia-smi, which
# trainhook uses to find GPUs (DEVICES=auto) and for GPU metrics. Without a GPU the same image
# trains on the CPU. The wheels make the image large (several GB).
#
# --shm-size: PyTorch dataloader workers pass batches through /dev/shm; Docker's default 64 MB
# is too small for resources.workers > 0.

# Node 24, the maintained LTS with the longest support ahead (Node 20 reached end of life in
# April 2026). The bookworm variant, Debian 12: its python3 is 3.11, the version the engines'
# requirements are pinned for (the trixie variants would bring Python 3.13).
FROM node:24-bookworm-slim

# python3-venv: `python3 -m venv`; libgl1 + libglib2.0-0: what opencv-python (an Ultralytics
# dependency) loads at import; tini: PID 1 that forwards SIGTERM and reaps the worker's orphans.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv libgl1 libglib2.0-0 ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# The engines' venvs first, one per worker/engines/<engine>/requirements.txt, before the rest of
# the code: this layer (GBs of wheels) is rebuilt when the engines' folders change.
# scripts/setup-python.mjs installs torch + torchvision, then the pins, checks each file's
# `# check: import …` line, and names each venv after its file's hash:
# /opt/trainhook/venv-<hash>. The server finds them the same way at run time (same
# TRAINHOOK_VENV_DIR), and `npm start`'s own setup step returns at once.
ENV TRAINHOOK_VENV_DIR=/opt/trainhook
COPY scripts/setup-python.mjs scripts/setup-python.mjs
COPY worker/engines/ worker/engines/
RUN PIP_NO_CACHE_DIR=1 node scripts/setup-python.mjs \
 && chmod -R a+rX /opt/trainhook

# Node dependencies. All of them: the server runs TypeScript through tsx (`node --import tsx`),
# which package.json lists under devDependencies.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund \
 && npm cache clean --force

COPY . .

# Runtime data (embedded database, jobs, datasets, base models, generated token and keys) lives
# in WORKDIR; keep it on a volume. A non-root user owns it.
RUN groupadd --system --gid 10001 trainhook \
 && useradd --system --uid 10001 --gid trainhook --create-home --home-dir /home/trainhook trainhook \
 && mkdir -p /var/lib/trainhook \
 && chown trainhook:trainhook /var/lib/trainhook

ENV HOST=0.0.0.0 \
    PORT=8000 \
    WORKDIR=/var/lib/trainhook \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

VOLUME ["/var/lib/trainhook"]
EXPOSE 8000
USER trainhook

# 200 while the database answers, 503 otherwise. Node's fetch: no curl in the image.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:' + (process.env.PORT || 8000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"

# SIGTERM (docker stop) makes trainhook checkpoint and re-queue running jobs before it exits:
# give it time (docker run --stop-timeout 60, compose stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "--import", "tsx", "src/main.ts"]
