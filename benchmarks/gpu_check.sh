#!/usr/bin/env bash
# The one prepared GPU check (under 5 minutes on one GPU): a PRM on a causal-LM backbone built from
# a config, trained in bf16, scoring a batch; prints PASS/FAIL per check and a JSON line of timings.
# Usage: bash benchmarks/gpu_check.sh   (in the repository root, with selfprm importable or from src/)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}src"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
timeout 280 python benchmarks/gpu_check.py --device cuda --dtype bfloat16 "$@"
