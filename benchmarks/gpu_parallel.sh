#!/usr/bin/env bash
# Several training runs of `python -m aebook.train_pretrained` side by side on one lent GPU.
#
# A small network leaves most of an H100/H200 idle, so runs that share it lose little: the
# whole lease trains several candidates (a warm start and a new shape, say) at once, and the
# CPU benchmark (benchmarks/restorers.py) then picks between them. Each line of SPEC is
#     NAME TASK ARGUMENTS...
# run as `python -m aebook.train_pretrained TASK --root $OUT/NAME --minutes $MINUTES
# --device cuda --quiet ARGUMENTS...`. Each run's folder and log come back as $OUT/NAME.tar
# (its MANIFEST.json holds the exact command); $OUT/log.txt has the timings.
#
# Usage (from the repository root):
#     OUT=/tmp/gpu MINUTES=7 bash benchmarks/gpu_parallel.sh benchmarks/gpu_runs.txt
# A dry run on the CPU in a minute:
#     OUT=/tmp/gpu MINUTES=0.1 DEVICE=cpu bash benchmarks/gpu_parallel.sh benchmarks/gpu_runs.txt
#
# The lent machine's Python (3.12, torch preinstalled) lacked constriction, PyWavelets and
# cryptography on 2026-11-30, and it cannot reach the registry. Fetch their wheels here into a
# folder git ignores and carry it: wheels found in $WHEELS (default .whl) are installed first,
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 \
#         --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#         constriction PyWavelets cryptography cffi pycparser
# and the script stops at once, before any run starts, if the package still cannot be imported.
set -uo pipefail

SPEC=${1:?usage: gpu_parallel.sh SPEC}
OUT=${OUT:-/tmp/gpu_parallel}
MINUTES=${MINUTES:-7}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
start=$(date +%s)
stamp() { echo "=== $(( $(date +%s) - start )) s: $*"; }

stamp "device"
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
WHEELS=${WHEELS:-.whl}
if compgen -G "$WHEELS/*.whl" > /dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_site \
        "$WHEELS"/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/gpu_site"
fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
$PY -c "import aebook.train_pretrained" || { echo "gpu_parallel: aebook cannot be imported here (see the wheels above)"; exit 2; }

names=() pids=()
while read -r name task args; do
    [ -z "$name" ] || [ "${name:0:1}" = "#" ] && continue
    names+=("$name")
    mkdir -p "$OUT/$name"
    stamp "start $name: $task $args"
    # shellcheck disable=SC2086  # ARGUMENTS split as words, as on a command line
    (timeout $(( ${MINUTES%.*} * 60 + 180 )) $PY -m aebook.train_pretrained "$task" --root "$OUT/$name" \
        --minutes "$MINUTES" --device "$DEVICE" --quiet $args > "$OUT/$name/train.log" 2>&1;
     echo "exit $?" >> "$OUT/$name/train.log") &
    pids+=($!)
done < "$SPEC"
wait "${pids[@]}"  # not a bare wait: that would also wait for the tee above
for name in "${names[@]}"; do
    stamp "$name: $(tail -n 1 "$OUT/$name/train.log")"
    tail -n 3 "$OUT/$name/train.log"
    tar -C "$OUT" -cf "$OUT/$name.tar" "$name" && rm -rf "${OUT:?}/$name"
done
stamp "done"
ls -l "$OUT"
