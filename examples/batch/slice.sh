#!/bin/sh
# One slice of a `tether sim` sweep or seeds run, as a batch engine starts it.
# The slice index comes from the engine: a Kubernetes Indexed Job sets JOB_COMPLETION_INDEX
# (0-based), a Slurm array SLURM_ARRAY_TASK_ID (submit with --array=0-N-1). SLICES (or Slurm's
# SLURM_ARRAY_TASK_COUNT) says how many slices there are. Every argument is passed to
# `tether sim`; each slice writes partial-K-of-N.json into its --out directory, and
# `tether sim merge DIR...` joins them into the output of one unsharded run.
set -eu
k="${JOB_COMPLETION_INDEX:-${SLURM_ARRAY_TASK_ID:-}}"
n="${SLICES:-${SLURM_ARRAY_TASK_COUNT:-}}"
if [ -z "$k" ] || [ -z "$n" ]; then
    echo "slice.sh: no slice index: run me as a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with SLICES set) or a Slurm array (--array=0-N-1)" >&2
    exit 2
fi
exec "${TETHER:-tether}" sim "$@" --shard "$k/$n"
