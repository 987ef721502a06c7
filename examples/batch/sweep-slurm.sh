#!/bin/sh
# A tether sim sweep as a Slurm job array: one task per slice (SLURM_ARRAY_TASK_ID = 0..7),
# each on one core, writing into a shared directory. Submit, then merge when all are done:
#   jobid=$(sbatch --parsable sweep-slurm.sh)
#   sbatch --dependency=afterok:$jobid --wrap "tether sim merge results/sweep --out results/merged"
#SBATCH --job-name=tether-sweep
#SBATCH --array=0-7
#SBATCH --cpus-per-task=1
#SBATCH --mem=1G
#SBATCH --output=results/slurm-%A_%a.out
set -eu
exec "${SLURM_SUBMIT_DIR:-.}/slice.sh" sweep scenarios/capacity.toml --param table-size \
    --values 1000,5000,20000,60000,100000,200000,400000,800000 \
    --jobs 1 --quiet --out results/sweep
