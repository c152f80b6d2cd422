#!/bin/bash
# Multi-node, multi-GPU VELoRA training under SLURM: one task per GPU, Lightning reads the ranks
# from SLURM's environment (SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS, ...).
#
#   sbatch scripts/slurm_train.sh configs/hardvs_vitb16.yaml data.root=/data/HARDVS
#
# Adjust --nodes and --gpus-per-node together; train.num_nodes and train.devices below follow them.
# train.batch_size is per GPU: the global batch is batch_size x nodes x GPUs per node.
# Resubmitting the same command resumes from <output_dir>/checkpoints/last.ckpt when it exists.
#SBATCH --job-name=velora
#SBATCH --nodes=2
#SBATCH --gpus-per-node=4
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=velora-%j.out
set -euo pipefail

CONFIG=${1:?give a config file (and optional section.field=value overrides)}
shift
OUTPUT=${VELORA_OUTPUT:-runs/velora-$SLURM_JOB_NAME}
VELORA=${VELORA:-.venv/bin/velora}

RESUME=()
if [ -f "$OUTPUT/checkpoints/last.ckpt" ]; then
  RESUME=(--resume "$OUTPUT/checkpoints/last.ckpt")
fi

srun "$VELORA" train --config "$CONFIG" "${RESUME[@]}" \
  train.output_dir="$OUTPUT" \
  train.strategy=ddp \
  train.accelerator=gpu \
  train.num_nodes="$SLURM_JOB_NUM_NODES" \
  train.devices="$SLURM_NTASKS_PER_NODE" \
  train.precision=bf16-mixed \
  data.num_workers="$((SLURM_CPUS_PER_TASK - 1))" \
  "$@"
