#!/usr/bin/env bash
# The GPU check, one command for the day a GPU machine is lent (written for one H200, 16 cores; all inside
# 8 minutes, every step under its own timeout, a failed step does not stop the others):
#   1. the CUDA tests (tests/cuda: every kernel against the float64 reference in fp32/bf16/fp16, forward and
#      gradients; the model against transformers' on CUDA; FlexAttention with our BlockMask),
#   2. the attention benchmark on CUDA: ours vs transformers vs dense SDPA vs FlexAttention, 1k-32k tokens,
#   3. the model benchmark on CUDA: ours vs transformers, block-sparse and full (SDPA), 1k-32k tokens,
#   4. a Ray Data batch job and a Ray Serve application with num_gpus=1 (scripts/gpu_ray_smoke.py).
# Everything goes into one folder: OUT (first argument, else $OUT, else benchmarks/results/gpu).
#
#   scripts/gpu_check.sh                      # from the repository root
#   PYTHON=/path/to/venv/bin/python scripts/gpu_check.sh /tmp/gpu
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-benchmarks/results/gpu}}"
PYTHON="${PYTHON:-python}"
THREADS="${THREADS:-8}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" RAY_AUTH_MODE=disabled TRANSFORMERS_VERBOSITY=error
SUMMARY="$OUT_DIR/summary.txt"
: > "$SUMMARY"
LENGTHS="1024 2048 4096 8192 16384 32768"

step() {  # step NAME TIMEOUT_S COMMAND...: run it, its output into OUT/NAME.log, its status into summary.txt
  local name=$1 limit=$2
  shift 2
  if [ -n "${DRY_RUN:-}" ]; then  # list the commands only (tests/test_gpu_check.py checks they parse)
    printf '%s\t%s\n' "$name" "$*" >> "$OUT_DIR/commands.txt"
    return
  fi
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
  local rc=$?
  local verdict=ok
  [ "$rc" -eq 0 ] || verdict="FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ', timed out'))"
  printf '%-10s %4d s  %s\n' "$name" $((SECONDS - start)) "$verdict" | tee -a "$SUMMARY"
}

[ -z "${DRY_RUN:-}" ] || : > "$OUT_DIR/commands.txt"
[ -n "${DRY_RUN:-}" ] || {
  date -u
  nvidia-smi 2>&1 || echo "nvidia-smi: not found"
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available',
torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
} > "$OUT_DIR/machine.txt" 2>&1

step tests 75 "$PYTHON" -m pytest -q -p no:cacheprovider tests/cuda --junitxml "$OUT_DIR/cuda_tests.xml"
# Each implementation runs in its own process, stopped after --timeout seconds (it keeps the points it finished),
# so the report is written inside the step's limit.
step attention 140 "$PYTHON" benchmarks/bench_attention.py --device cuda --threads "$THREADS" --lengths $LENGTHS \
  --impls ours hf_sparse sdpa_dense flex --cap "hf_sparse:*=16384" --cap "sdpa_dense:*=32768" --repeat 5 \
  --timeout 30 --out "$OUT_DIR"
step model 130 "$PYTHON" benchmarks/bench_model.py --device cuda --threads "$THREADS" --lengths $LENGTHS \
  --cap "ours_sparse:*=32768" --cap "ours_full:*=32768" --cap "hf_sparse:*=16384" --cap "hf_full:*=8192" \
  --repeat 3 --timeout 25 --out "$OUT_DIR"
step ray 110 "$PYTHON" scripts/gpu_ray_smoke.py --num-gpus 1 --out "$OUT_DIR"

echo "results in $OUT_DIR: summary.txt, machine.txt, *.log, cuda_tests.xml, attention_cuda.*, model_cuda.*, ray_smoke.json"
! grep -q FAILED "$SUMMARY"
