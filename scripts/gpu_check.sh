#!/usr/bin/env bash
# One prepared GPU check (issue 16); under 8 minutes on one NVIDIA GPU by its step limits
# (200 s + 260 s, plus start-up; H200 estimate ~3 min).
#
#   bash scripts/gpu_check.sh                # on a machine with a CUDA GPU
#   bash scripts/gpu_check.sh --cpu-dry-run  # the same steps, everything small, on the CPU
#
# 1. the fast tests that take the `device` fixture, with CUDA tensors (`--device cuda`),
#    and the CUDA-only tests (marker `cuda`: float32 under cuDNN's default TF32);
# 2. benchmarks/bench_gpu.py: exact vs stochastic at k = 128, 512, 1024 on a DCGAN-style
#    generator with 3x64x64 output, and the float32 / TF32 / bf16 precision table.
# Python: .venv/bin/python if present, else python3 (the GPU machine's, with CUDA torch);
# the package is taken from src/ (PYTHONPATH), so no install is needed there.
# Logs: $OUT (when set) or runs/gpu_check/.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
[[ "${1:-}" == "--cpu-dry-run" ]] && DRY=1
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
LOGS=${OUT:-runs/gpu_check}
mkdir -p "$LOGS"
START=$(date +%s)

if (( DRY )); then
    DEVICE=cpu
    BENCH=(--device cpu --sizes 8 16 --batch 2 --width 8 --repeats 1 --seeds 2
           --precision-k 16 --threads 1)
    export OMP_NUM_THREADS=1
else
    DEVICE=cuda
    BENCH=(--device cuda --sizes 128 512 1024 --batch 4 --repeats 3 --seeds 3 --precision-k 128)
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "no CUDA device visible to $PY; use --cpu-dry-run on a CPU machine" >&2
        exit 2
    fi
fi

echo "== gpu_check ($([[ $DRY == 1 ]] && echo 'CPU dry run' || echo 'CUDA')), $(date -u +%FT%TZ)"
command -v nvidia-smi >/dev/null && nvidia-smi -L
"$PY" -c "import torch, sys; print('python', sys.version.split()[0], '| torch', torch.__version__,
'| cuda', torch.version.cuda, '|', torch.cuda.get_device_name() if torch.cuda.is_available()
else 'no GPU')"

status=()
step() {  # step NAME TIMEOUT_S COMMAND...: run with a time limit, log, remember the outcome
    local name=$1 limit=$2; shift 2
    local t0=$(date +%s)
    echo; echo "== $name"
    timeout "$limit" "$@" 2>&1 | tee "$LOGS/$name.log"
    local rc=${PIPESTATUS[0]}
    status+=("$name: $([[ $rc == 0 ]] && echo ok || echo "FAILED (rc $rc)") in $(( $(date +%s) - t0 )) s")
}

step tests 200 "$PY" -m pytest -q -p no:cacheprovider -rs --device "$DEVICE" \
    -m "(device or cuda) and not slow" tests/
step bench_gpu 260 "$PY" benchmarks/bench_gpu.py "${BENCH[@]}" --json "$LOGS/bench_gpu.json"

echo; echo "== summary ($(( $(date +%s) - START )) s in all; logs in $LOGS)"
grep -h -E "^[0-9]+ (passed|failed)|passed|failed" "$LOGS/tests.log" | tail -1
for s in "${status[@]}"; do echo "  $s"; done
[[ "${status[*]}" != *FAILED* ]]
