#!/usr/bin/env bash
# One multi-GPU host: every local GPU in one process. launch/run.py builds a ('data',) mesh over
# all visible devices and jit splits each global batch over them, so batch sizes must be
# multiples of the GPU count (run.py checks and says so).
#
# Usage:
#   launch/gpu_host.sh CONFIG WORKDIR [--config.FIELD=VALUE ...]
#
# Example (8 GPUs, 32 images per GPU):
#   launch/gpu_host.sh configs/celeba.py:target=attractive runs/celeba_attractive \
#       --config.performer.init_from=/data/vgg16-397923af.pth \
#       --config.performer.batch_size=256 --config.explainer.batch_size=256
#
# Environment:
#   CUDA_VISIBLE_DEVICES           which GPUs to use (default: all).
#   PYTHON                         interpreter (default: python).
#   XLA_PYTHON_CLIENT_MEM_FRACTION share of each GPU's memory JAX takes up front (default 0.9;
#                                  JAX's own default is 0.75).
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG WORKDIR [--config.FIELD=VALUE ...]" >&2
  exit 2
fi
config=$1
workdir=$2
shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
if command -v nvidia-smi >/dev/null 2>&1; then
  echo "GPUs on $(hostname): $(nvidia-smi -L | wc -l)" \
       "(CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-all})"
fi
exec "${PYTHON:-python}" "$here/run.py" --config="$config" --workdir="$workdir" "$@"
