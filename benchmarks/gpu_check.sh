#!/usr/bin/env bash
# The first check to run on a GPU (< 8 minutes on one GPU):
#   1. the CUDA-marked tests (pytest -m cuda; they skip without a GPU),
#   2. Glow on MNIST-5k with bf16 autocast + torch.compile (benchmarks/gpu_check.py),
#      writing images/s, peak memory and test bits/dim to benchmarks/results/gpu_check.json.
#
#   benchmarks/gpu_check.sh              # the real check (needs CUDA)
#   benchmarks/gpu_check.sh --dry-run    # tiny CPU version in seconds (tests/test_gpu_check.py)
#   OUT=/tmp/x.json benchmarks/gpu_check.sh --dry-run
#
# Without a CUDA device the script runs the dry version and says so.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python; fi
fi
DRY=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=(--dry-run) ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$arg' (use --dry-run or --help)" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-benchmarks/results/gpu_check.json}"
if [[ ${#DRY[@]} -eq 0 ]] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check.sh: no CUDA device visible to torch: running the dry (CPU) version" >&2
  DRY=(--dry-run)
fi
start=$(date +%s)
echo "== 1/2 CUDA-marked tests" >&2
PYTEST_TARGETS=(tests/models/test_glow.py tests/models/test_multiscale.py tests/test_metrics.py)
set +e
"$PY" -m pytest -q -p no:cacheprovider -m cuda "${PYTEST_TARGETS[@]}"
rc=$?
set -e
# 5 = no test collected/selected: only acceptable on a dry run, where every CUDA test skips
if [[ $rc -ne 0 && $rc -ne 5 ]]; then echo "gpu_check.sh: CUDA tests failed (exit $rc)" >&2; exit $rc; fi
echo "== 2/2 Glow on MNIST-5k (bf16 + torch.compile on a GPU)" >&2
"$PY" benchmarks/gpu_check.py "${DRY[@]}" --out "$OUT"
echo "gpu_check.sh: wrote $OUT in $(( $(date +%s) - start )) s" >&2
