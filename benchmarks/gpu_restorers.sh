#!/usr/bin/env bash
# The encoder-decoder restorers trained on a lent GPU, then measured: one command for a few minutes.
#
# For each task in TASKS: python -m aebook.train_pretrained TASK --minutes M --device cuda, from
# the stage in INIT_ROOT/TASK when there is one (a CPU stage, or the shipped weights once they are
# encoder-decoders: INIT_ROOT=aebook/pretrained), else from scratch; then benchmarks/restorers.py
# scores every new network against the shipped one and the classical baseline on the held-out
# photos (BM3D for the denoiser) and times the denoisers on the CPU, side by side.
#
# Everything lands in $OUT: log.txt, runs/TASK (run folders to copy into aebook/pretrained/),
# runs/MANIFEST.json (their manifest entries, with the commands) and restorers.json.
#
# Usage (from the repository root):
#     OUT=/tmp/gpu bash benchmarks/gpu_restorers.sh              (about 9 minutes on an H100/H200)
# A dry run of the same steps on a CPU, in a few minutes:
#     OUT=/tmp/gpu DEVICE=cpu MINUTES_denoise=0.2 MINUTES_inpaint=0.2 MINUTES_upscale2=0.2 \
#         N_PATCHES=256 BATCH=8 CROP=96 bash benchmarks/gpu_restorers.sh
set -uo pipefail

OUT=${OUT:-/tmp/gpu_restorers}
DEVICE=${DEVICE:-cuda}
TASKS=${TASKS:-"denoise inpaint upscale2"}
MINUTES_denoise=${MINUTES_denoise:-3.5}
MINUTES_inpaint=${MINUTES_inpaint:-1.5}
MINUTES_upscale2=${MINUTES_upscale2:-1.5}
MINUTES_upscale4=${MINUTES_upscale4:-1}
MINUTES_enhance=${MINUTES_enhance:-1}
N_PATCHES=${N_PATCHES:-60000}     # 64 x 64 patches held on the GPU (1 GB in float32)
BATCH=${BATCH:-64}
LR=${LR:-1e-3}
WARMUP=${WARMUP:-0.05}
SEED=${SEED:-21}
INIT_ROOT=${INIT_ROOT:-}          # a folder of run folders by task name to continue from
CROP=${CROP:-}                    # centre crops for the evaluation (default: whole photos)

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
mkdir -p "$OUT/runs"
exec > >(tee "$OUT/log.txt") 2>&1
start=$(date +%s)
step() { echo; echo "=== $(( $(date +%s) - start )) s: $*"; }

step "device"
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

compare=()
for task in $TASKS; do
    minutes_var="MINUTES_$task"
    minutes=${!minutes_var}
    init=()
    if [ -n "$INIT_ROOT" ] && [ -d "$INIT_ROOT/$task" ]; then init=(--init "$INIT_ROOT/$task"); fi
    step "$task: $minutes min on $DEVICE ${init[*]}"
    timeout $(( ${minutes%.*} * 60 + 240 )) $PY -m aebook.train_pretrained "$task" "${init[@]}" --root "$OUT/runs" \
        --minutes "$minutes" --device "$DEVICE" --quiet --set epochs=100000 --set n_patches="$N_PATCHES" \
        --set batch_size="$BATCH" --set lr="$LR" --set warmup="$WARMUP" --set seed="$SEED" \
      && case "$task" in denoise|inpaint|upscale2) compare+=("$task=$task" "$task=$OUT/runs/$task");; esac
done

if [ ${#compare[@]} -gt 0 ]; then
    step "the new networks against the shipped ones and the classical baselines"
    crop=(); [ -n "$CROP" ] && crop=(--crop "$CROP")
    timeout 300 $PY benchmarks/restorers.py "${compare[@]}" --bm3d "${crop[@]}" --json | tee "$OUT/restorers.log"
    tail -n 1 "$OUT/restorers.log" > "$OUT/restorers.json" && rm -f "$OUT/restorers.log"
fi

step "done"
ls -l "$OUT" "$OUT/runs"
