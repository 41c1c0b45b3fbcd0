#!/usr/bin/env bash
# The GPU work of the book in one command, for a machine with a GPU lent for a few minutes.
#
#   1. The shipped denoiser trained further on the GPU for DENOISE_MINUTES wall-clock minutes
#      (python -m aebook.train_pretrained denoise --init denoise --minutes ...): the next stage
#      of its lineage (chapter 4.4's goal against BM3D). First, as it matters most.
#      The shipped network has 17 layers (DnCNN's depth), grown from 12 on the CPU; a
#      DENOISE_DEPTH above that grows it again first (aebook.restoration.nets.deepen: new layers start
#      as the identity, so training starts from the shipped function). DENOISE_SIGMA_RANGE
#      is the interval of training noise levels (the recipe's [0,55] by default; the last CPU
#      stage used [15,35], around chapter 4.4's sigma = 25).
#      The learning rate ramps up over the first WARMUP (5%) of the budget: without it, Adam's
#      first steps knock the trained network far off its optimum and part of the budget goes
#      to climbing back. Measured on the 2-core CPU (1 minute, 17 layers grown from the shipped
#      30.57 dB at sigma 25: train_restorer with lr 5e-4, batch 64, seed 11, scored by
#      benchmarks/denoise_eval.py): 29.51 dB after it without warm-up, 30.54 with warmup=0.2.
#   1b. The kltcodec's decoder network trained on the GPU for KLT_MINUTES (from the (new)
#      denoiser, as on the CPU, at KLT_DEPTH layers; KLT_INIT=kltcodec continues the shipped
#      codec's own network instead; python -m aebook.train_pretrained kltcodec ...).
#   1c. benchmarks/denoise_eval.py: the new denoiser against the shipped one on the held-out
#      photos at sigma 15/25/50, one pass (denoise_eval.json), to decide which to keep.
#   2. benchmarks/throughput.py on the GPU, once per entry of THROUGHPUT_RUNS (by default
#      aebook's loop at batch 64 with its step captured as a CUDA graph: the run that met
#      chapter 5.1's goal); each run has the textbook loop at batch 64 beside it.
#      torch.compile is off: its start-up counts in aebook's time (COMPILE=1 adds it).
#   0. Before all: tests/test_cuda_graph.py, whose capture tests are skipped without a GPU.
#   3. A codec with more latent channels and a learned entropy model, trained for
#      CODEC_MINUTES and measured against JPEG on the held-out photos (benchmarks/codec_rd.py),
#      if DEADLINE leaves it time.
#
# Everything lands in $OUT: log.txt (pytest's output too), throughput.jsonl, denoise_eval.json, denoise/ and
# kltcodec/ (run folders to copy into aebook/zoo/weights/), MANIFEST.json (the package manifest
# with their new entries) and codec.tar (the codec run folder) with codec_rd.json.
# Each step has its own time limit and a failed step does not stop the next ones.
#
# Usage (from the repository root; a GPU machine needs no install when PyTorch, scikit-image,
# scikit-learn, safetensors and tqdm are there):
#     OUT=/tmp/gpu bash benchmarks/gpu_session.sh     (about 8 minutes on an H100)
# A dry run of the same steps on a CPU, in about two minutes:
#     OUT=/tmp/gpu DEVICE=cpu N_THROUGHPUT=512 THROUGHPUT_EPOCHS=1 DENOISE_MINUTES=0.2 KLT_MINUTES=0.2 \
#         N_PATCHES=512 CODEC_MINUTES=0.3 CODEC_PATCHES=256 bash benchmarks/gpu_session.sh
set -uo pipefail

OUT=${OUT:-/tmp/gpu_session}
DEVICE=${DEVICE:-cuda}
N_THROUGHPUT=${N_THROUGHPUT:-60000}
THROUGHPUT_EPOCHS=${THROUGHPUT_EPOCHS:-3}
THROUGHPUT_RUNS=${THROUGHPUT_RUNS:-"--aebook-batch-size 64 --cuda-graph"}
DENOISE_MINUTES=${DENOISE_MINUTES:-4.5}
N_PATCHES=${N_PATCHES:-200000}
DENOISE_BATCH=${DENOISE_BATCH:-256}
DENOISE_LR=${DENOISE_LR:-5e-4}  # stages 5 and 6: 5e-4 then 3e-4 (benchmarks/results/2026-11-26b_h100)
DENOISE_SEED=${DENOISE_SEED:-6}
DENOISE_DEPTH=${DENOISE_DEPTH:-17}  # shipped: 17; more grows the network (aebook.restoration.nets.deepen)
DENOISE_SIGMA_RANGE=${DENOISE_SIGMA_RANGE:-[0,55]}  # training noise levels, 0-255 scale
WARMUP=${WARMUP:-0.05}  # share of each budget with the learning rate ramping up from 0 (warm starts)
KLT_MINUTES=${KLT_MINUTES:-2.5}
KLT_DEPTH=${KLT_DEPTH:-$DENOISE_DEPTH}  # the kltcodec's network starts from the new denoiser: as deep or deeper
KLT_INIT=${KLT_INIT:-denoise}  # or kltcodec: continue the shipped codec's own network
CODEC_MINUTES=${CODEC_MINUTES:-1.5}
CODEC_PATCHES=${CODEC_PATCHES:-100000}
CODEC_BATCH=${CODEC_BATCH:-128}  # 32 left the H100 launch-bound: 6250 steps in 65 s
CODEC_CHANNELS=${CODEC_CHANNELS:-24}
COMPILE=${COMPILE:-0}
DEADLINE=${DEADLINE:-560}  # seconds: the device call's limit, less a margin for the copy back

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
start=$(date +%s)
step() { echo; echo "=== $(( $(date +%s) - start )) s: $*"; }

step "device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

step "tests that need a GPU (CUDA-graph capture of the training step)"
timeout 120 $PY -m pytest -q -o addopts="" -p no:cacheprovider tests/test_cuda_graph.py  # no nbval there

step "denoise: continue the shipped weights for $DENOISE_MINUTES min at $DENOISE_DEPTH layers"
root=$(mktemp -d)
cp -r aebook/zoo/weights/. "$root/"
timeout $(( ${DENOISE_MINUTES%.*} * 60 + 180 )) $PY -m aebook.train_pretrained denoise --init denoise --root "$root" \
    --minutes "$DENOISE_MINUTES" --device "$DEVICE" --quiet --set epochs=100000 --set n_patches="$N_PATCHES" \
    --set batch_size="$DENOISE_BATCH" --set seed="$DENOISE_SEED" --set lr="$DENOISE_LR" --set depth="$DENOISE_DEPTH" \
    --set warmup="$WARMUP" --set sigma_range="$DENOISE_SIGMA_RANGE" \
  && mkdir -p "$OUT/denoise" && cp "$root"/denoise/* "$OUT/denoise/" && cp "$root/MANIFEST.json" "$OUT/"

step "kltcodec: its decoder network for $KLT_MINUTES min, from $KLT_INIT (as trained above)"
timeout $(( ${KLT_MINUTES%.*} * 60 + 180 )) $PY -m aebook.train_pretrained kltcodec --init "$KLT_INIT" --root "$root" \
    --minutes "$KLT_MINUTES" --device "$DEVICE" --quiet --set epochs=100000 --set n_patches="$N_PATCHES" \
    --set batch_size="$DENOISE_BATCH" --set seed=1 --set depth="$KLT_DEPTH" --set warmup="$WARMUP" \
  && mkdir -p "$OUT/kltcodec" && cp "$root"/kltcodec/* "$OUT/kltcodec/" && cp "$root/MANIFEST.json" "$OUT/"

step "denoise: the shipped weights against the new ones on the held-out photos, one pass"
if [ -d "$OUT/denoise" ]; then
    timeout 180 $PY benchmarks/denoise_eval.py aebook/zoo/weights/denoise "$OUT/denoise" --device "$DEVICE" --json \
        | tee "$OUT/denoise_eval.log"
    tail -n 1 "$OUT/denoise_eval.log" > "$OUT/denoise_eval.json" && rm -f "$OUT/denoise_eval.log"
fi

compile=""; [ "$COMPILE" = 1 ] && compile="--compile"  # compile time counts in aebook's time
IFS=';' read -ra runs <<< "$THROUGHPUT_RUNS"
for run in "${runs[@]}"; do
    step "throughput: aebook's loop with $run"
    # shellcheck disable=SC2086  # $run holds several arguments
    timeout 150 $PY benchmarks/throughput.py --device "$DEVICE" --n "$N_THROUGHPUT" --epochs "$THROUGHPUT_EPOCHS" \
        --width 32 $compile $run --json | tee "$OUT/throughput_run.log"
    tail -n 1 "$OUT/throughput_run.log" >> "$OUT/throughput.jsonl"
done
rm -f "$OUT/throughput_run.log"  # its text is in log.txt

step "codec: $CODEC_CHANNELS latent channels, factorized prior, $CODEC_MINUTES min"
codec=$(mktemp -d)/codec
left=$(( DEADLINE - ($(date +%s) - start) ))
need=$(awk -v m="$CODEC_MINUTES" 'BEGIN { printf "%d", m * 60 + 60 }')  # training, then about 60 s to measure
if [ "$left" -ge "$need" ]; then
    timeout "$left" $PY benchmarks/codec_rd.py --device "$DEVICE" \
        --train-minutes "$CODEC_MINUTES" --n-patches "$CODEC_PATCHES" --batch-size "$CODEC_BATCH" \
        --latent-channels "$CODEC_CHANNELS" --entropy-model factorized --lmbda 0.002 --save "$codec" --json \
        | tee "$OUT/codec_rd.log"
    tail -n 1 "$OUT/codec_rd.log" > "$OUT/codec_rd.json" && rm -f "$OUT/codec_rd.log"
else
    echo "skipped: $left s left before DEADLINE, the codec step needs $need s"
fi
[ -d "$codec" ] && tar -C "$(dirname "$codec")" -cf "$OUT/codec.tar" codec

step "done"
ls -l "$OUT" "$OUT/denoise" 2>/dev/null
