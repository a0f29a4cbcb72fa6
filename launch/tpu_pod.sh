#!/usr/bin/env bash
# A Cloud TPU pod slice: the same launch/run.py on every TPU VM worker at once, through
# `gcloud compute tpus tpu-vm ssh --worker=all`. With --config.distributed.coordinator_address=auto,
# xplain_jax.infra.parallel.initialize_distributed calls jax.distributed.initialize(), which finds the
# coordinator, the worker count and this worker's id from the TPU metadata. The mesh spans every
# chip of the slice; batch sizes must be multiples of the total chip count.
#
# Usage (from the repository root):
#   launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [--config.FIELD=VALUE ...]
#
# Example (v4-32: 4 workers x 4 chips):
#   SETUP=1 launch/tpu_pod.sh my-v4-32 us-central2-b configs/celeba.py:target=young \
#       /mnt/shared/runs/celeba_young --config.dataset.data_dir=/mnt/shared/tensorflow_datasets
#
# Environment:
#   SETUP=1    first copy this checkout to ~/xplain_jax on every worker and install it there with
#              `pip install -e . "jax[tpu]"` (needed once per TPU VM).
#   PROJECT    gcloud project (default: gcloud's configured one).
#   REMOTE_DIR where the checkout lives on the workers (default: xplain_jax, in the home dir).
#
# WORKDIR and the dataset must be on storage every worker can read and write (e.g. a Filestore or
# NFS mount): checkpoints are written by all workers together.
set -euo pipefail

if [[ $# -lt 4 ]]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [--config.FIELD=VALUE ...]" >&2
  exit 2
fi
tpu=$1
zone=$2
config=$3
workdir=$4
shift 4
remote=${REMOTE_DIR:-xplain_jax}
gcloud_args=(--zone="$zone")
if [[ -n "${PROJECT:-}" ]]; then
  gcloud_args+=(--project="$PROJECT")
fi

if [[ "${SETUP:-0}" == 1 ]]; then
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  gcloud compute tpus tpu-vm ssh "$tpu" "${gcloud_args[@]}" --worker=all \
    --command="rm -rf $(printf '%q' "$remote") && mkdir -p $(printf '%q' "$remote")"
  gcloud compute tpus tpu-vm scp "${gcloud_args[@]}" --worker=all --recurse \
    "$root"/setup.py "$root"/README.md "$root"/launch "$root"/configs "$root"/xplain_jax \
    "$tpu:$remote/"
  gcloud compute tpus tpu-vm ssh "$tpu" "${gcloud_args[@]}" --worker=all \
    --command="cd $(printf '%q' "$remote") && python3 -m pip install -q -e . 'jax[tpu]'"
fi

# Quote every argument for the remote shell.
cmd="cd $(printf '%q' "$remote") && python3 launch/run.py"
cmd+=" --config=$(printf '%q' "$config") --workdir=$(printf '%q' "$workdir")"
cmd+=" --config.distributed.coordinator_address=auto"
for arg in "$@"; do
  cmd+=" $(printf '%q' "$arg")"
done
echo "on every worker of $tpu: $cmd"
gcloud compute tpus tpu-vm ssh "$tpu" "${gcloud_args[@]}" --worker=all --command="$cmd"
