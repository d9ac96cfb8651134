#!/usr/bin/env bash
# The GPU benchmark suite: one device call that measures every GPU figure the README still lacks.
#
#   bash benchmarks/gpu_suite.sh                       # on the device machine, in the repo root
#   SUITE_SCALE=tiny bash benchmarks/gpu_suite.sh      # here, on the CPU: every command line, tiny sizes
#
# Everything goes to stdout and to $OUT/gpu_suite.log ($OUT unset: .cache/gpu_suite/). Each step runs under
# its own `timeout`, and the whole suite under a deadline (SUITE_BUDGET_S, default 540 s): a step gets at
# most the time left, and steps are skipped (and say so) once less than 20 s is left, so the log is always
# complete. Estimates below are for one H100 (guesses from CPU measurements and FLOP counts, not measured):
#
#   setup (pip install -e ., CIFAR-10 materialize)                          ~ 20 s
#   0 tests/test_cuda.py: no host-device syncs in the hot loops, device-free masks ~ 30 s
#   1 train_throughput  bf16+channels-last+compile vs paper loop, 100 steps ~120 s (compile ~60-90 s)
#   2 eval_throughput   10,000 images, sizes 1,5,50                         ~ 60 s (baseline 50 DataLoader passes)
#   3 sweep_throughput  15 x 5 cells, sizes 1 and 50, SWEEP_IMAGES per cell ~100 s at 500 images
#   4 corrupt_throughput generation on cuda, 19 x 5, 5,000 x 32 px + 64 x 224 px  ~ 60 s
#   5 blur_formulations layer level (+compile) and network level (eager)    ~120 s (compile 6 x ~15 s)
#   6 smoothbench eval --profile, 10,000 images, sizes 1,5,50               ~ 40 s
#
# The full sweep (15 x 5 x 10,000 at size 50 = 37.5 M sample-forwards) does not fit: at an estimated
# 15-100 k sample-forwards/s it alone takes 6-40 min. The
# suite times SUITE_SWEEP_IMAGES (default 500) images per cell and sweep_throughput prints the full-sweep
# PROJECTION from them; SUITE_SWEEP_IMAGES=10000 runs it in full (give it its own device call).
#
# Data. CIFAR-10: $SMOOTHBENCH_CIFAR10_DIR, else .cache/cifar10, else materialized there from
# ../shared/data/cifar10 or from a carried copy .cache/carry/cifar10; else the synthetic sets stand in
# (eval then has 2,000 test images). Frost textures: $SMOOTHBENCH_FROST_DIR, ../shared/data/frost or
# .cache/carry/frost; without them sweep and corrupt leave frost out and say so. A fresh device machine has
# no ../shared, so stage both first (58 MB, under the 64 MiB carry limit):
#   mkdir -p .cache/carry && cp -r ../shared/data/cifar10 ../shared/data/frost .cache/carry/
#   run(command="bash benchmarks/gpu_suite.sh", carry=[".cache/carry"], timeout_s=600)
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCALE=${SUITE_SCALE:-full}
OUTDIR=${OUT:-$ROOT/.cache/gpu_suite}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu_suite.log
: > "$LOG"
START=$(date +%s)
DEADLINE=$(( START + ${SUITE_BUDGET_S:-540} ))

log() { echo "$*" | tee -a "$LOG"; }

step() {  # step NAME ESTIMATE_S LIMIT_S COMMAND...: run COMMAND under timeout, output to stdout and the log
    local name=$1 estimate=$2 limit=$3
    shift 3
    local left=$(( DEADLINE - $(date +%s) ))
    if (( left < 20 )); then
        log "== $name: SKIPPED, suite budget spent ($(( $(date +%s) - START )) s used)"
        return
    fi
    (( limit > left )) && limit=$left
    log ""
    log "== $name (estimate ${estimate} s, limit ${limit} s, t+$(( $(date +%s) - START )) s): $*"
    local t0=$(date +%s)
    timeout -k 10 "$limit" "$@" 2>&1 | grep --line-buffered -v "No CUDA runtime is found" | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    log "== $name: exit $rc$( ((rc == 124 || rc == 137)) && echo ' (TIMED OUT)') after $(( $(date +%s) - t0 )) s"
}

# ---------------------------------------------------------------------------------------------- setup
if [[ -x $ROOT/.venv/bin/python ]]; then PY=$ROOT/.venv/bin/python; else PY=${PYTHON:-python3}; fi
if ! "$PY" -c "import torch" 2>/dev/null; then PY=python; fi
if ! (cd /tmp && "$PY" -c "import smoothbench" 2>/dev/null); then
    "$PY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" >>"$LOG" 2>&1 || log "pip install -e . failed (PYTHONPATH fallback)"
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}  # smoothbench importable even if the install failed
export PYTHONUNBUFFERED=1  # a step killed by its timeout still leaves its output in the log
COMMIT=$(git rev-parse --short HEAD 2>/dev/null) && { git diff --quiet HEAD 2>/dev/null || COMMIT+="+changes"; }
log "== gpu_suite scale=$SCALE, budget ${SUITE_BUDGET_S:-540} s, $(date -u +%FT%TZ), commit ${COMMIT:-unknown}"
"$PY" - 2>&1 <<'EOF' | tee -a "$LOG"
import importlib.util, platform, torch
missing = [m for m in ("smoothbench", "torchvision", "typer", "rich", "pandas", "scipy", "matplotlib", "PIL")
           if importlib.util.find_spec(m) is None]
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"python {platform.python_version()}, torch {torch.__version__}, cuda {torch.version.cuda}, GPU {gpu}, "
      f"{torch.get_num_threads()} CPU threads; missing modules: {missing or 'none'}")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee -a "$LOG"

CIFAR=${SMOOTHBENCH_CIFAR10_DIR:-$ROOT/.cache/cifar10}
if [[ ! -f $CIFAR/cifar-10-batches-py/test_batch ]]; then
    CIFAR=$ROOT/.cache/cifar10
    for materialize in ../shared/data/cifar10/materialize.py .cache/carry/cifar10/materialize.py; do
        if [[ ! -f $CIFAR/cifar-10-batches-py/test_batch && -f $materialize ]]; then
            "$PY" "$materialize" "$CIFAR" >>"$LOG" 2>&1 || log "materialize from $materialize failed"
        fi
    done
fi
if [[ -f $CIFAR/cifar-10-batches-py/test_batch ]]; then
    export SMOOTHBENCH_CIFAR10_DIR=$CIFAR
    DATA_ARGS=(--data-dir "$CIFAR"); DATASET=cifar10; EVAL_DATA=(--dataset cifar10 --data-dir "$CIFAR")
    log "CIFAR-10: $CIFAR"
else
    DATA_ARGS=(); DATASET=synthetic; EVAL_DATA=(--dataset synthetic)
    log "CIFAR-10 NOT FOUND: the synthetic sets stand in (see the header to stage it)"
fi
FROST=${SMOOTHBENCH_FROST_DIR:-}
for candidate in ../shared/data/frost .cache/carry/frost; do
    [[ -z $FROST && -f $candidate/frost1.png ]] && FROST=$(cd "$candidate" && pwd)
done
if [[ -n $FROST ]]; then export SMOOTHBENCH_FROST_DIR=$FROST; log "frost textures: $FROST"; FROST_ARGS=(--frost-dir "$FROST")
else log "frost textures NOT FOUND: sweep and corrupt leave frost out"; FROST_ARGS=(--frost-dir "$OUTDIR/no-frost"); fi

# ------------------------------------------------------------------------------------------- sizes
if [[ $SCALE == tiny ]]; then  # CPU dry run: every command line, minimal work
    DEV=cpu; WIDTH=(--width 8); NET_WIDTH=(--net-width 8); MODEL_WIDTH=8
    TRAIN=(--steps 2 --warmup 1 --workers 0); EVAL=(--images 32 --passes 3 --batch-size 16)
    SWEEP=(--images "${SUITE_SWEEP_IMAGES:-8}" --corruptions 2 --severities 1,3 --baseline-images 8 --batch-size 8)
    CORRUPT=(--n32 8 --n224 1 --severities 3 --repeats 1)
    BLUR=(--batch 2 --width 8 --min-time 0.05 --net-batch 4 --steps 1 --warmup 1 --repeats 1 --no-compile)
    PROFILE=(--subset 32 --ensembles 1,3 --batch-size 16 --precision fp32)
else
    DEV=cuda; WIDTH=(); NET_WIDTH=(); MODEL_WIDTH=""
    TRAIN=(--steps 100 --warmup 10 --workers 4); EVAL=(--images 10000 --passes 50)
    SWEEP=(--images "${SUITE_SWEEP_IMAGES:-500}" --baseline-images 1000)
    CORRUPT=(--n32 5000 --n224 64 --severities 1,2,3,4,5 --repeats 1)
    BLUR=(--min-time 0.1 --modes fp32,bf16-cl --steps 20 --repeats 2)
    PROFILE=(--ensembles 1,5,50 --precision bf16 --channels-last)
fi

# ------------------------------------------------------------------------------------------- steps
if [[ $DEV == cuda ]] && "$PY" -c "import pytest" 2>/dev/null; then  # CUDA-only correctness: no syncs, device-free masks
    step cuda_tests 30 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_data.py::test_train_batches_same_on_gpu_and_cpu
else
    log "== cuda_tests: SKIPPED (needs CUDA and pytest)"
fi
step train_throughput 120 180 "$PY" benchmarks/train_throughput.py --device $DEV "${WIDTH[@]}" "${TRAIN[@]}" "${DATA_ARGS[@]}"
step eval_throughput 60 120 "$PY" benchmarks/eval_throughput.py --device $DEV "${WIDTH[@]}" "${EVAL[@]}" "${DATA_ARGS[@]}"
step sweep_throughput 100 180 "$PY" benchmarks/sweep_throughput.py --device $DEV "${WIDTH[@]}" "${SWEEP[@]}" "${DATA_ARGS[@]}" "${FROST_ARGS[@]}"
step corrupt_throughput 60 100 "$PY" benchmarks/corrupt_throughput.py --device $DEV --threads 4 "${CORRUPT[@]}" "${FROST_ARGS[@]}" --json "$OUTDIR/corrupt_throughput.json"
step blur_formulations 120 170 "$PY" benchmarks/blur_formulations.py --device $DEV "${BLUR[@]}" "${NET_WIDTH[@]}"
MODEL=$OUTDIR/random-resnet18.pt
"$PY" - "$MODEL" "$DATASET" "$MODEL_WIDTH" <<'EOF' 2>&1 | tee -a "$LOG"
import sys, torch
from smoothbench.data import NORMALIZATION
from smoothbench.models.registry import create_model
from smoothbench.models.store import save_model
path, dataset, width = sys.argv[1], sys.argv[2], sys.argv[3]
mean, std = NORMALIZATION[dataset]
torch.manual_seed(0)
save_model(create_model("resnet18", method="mcdo", smoothing="tanh-blur", width=int(width) if width else None,
                        num_classes=10, dataset=dataset, mean=mean, std=std), path)
EOF
step eval_profile 40 90 "$PY" -m smoothbench eval "$MODEL" "${EVAL_DATA[@]}" --device $DEV "${PROFILE[@]}" --profile --quiet
log ""
log "== gpu_suite done in $(( $(date +%s) - START )) s; log: $LOG"
