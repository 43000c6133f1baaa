#!/bin/bash
# Starts a coordinator job and a worker array that begins once the coordinator runs.
#   deploy/slurm/launch.sh [GPUS]      (default 8)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
gpus="${1:-8}"
if ! [[ $gpus =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [GPUS]  (GPUS: a positive number, got '$gpus')" >&2
    exit 2
fi
export SWEEP_ENV_FILE="$here/compsafe.env"
coordinator=$(sbatch --parsable --export=ALL "$here/coordinator.sbatch")
workers=$(sbatch --parsable --export=ALL --dependency="after:${coordinator}" \
    --array="0-$((gpus - 1))" "$here/workers.sbatch")
echo "coordinator job $coordinator, worker array $workers ($gpus GPUs)"
echo "submit with: COMPSAFE_COORDINATOR=\$(cat \$SWEEP_STATE_DIR/coordinator.url) compsafe submit SPEC"
