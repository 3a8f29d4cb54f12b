#!/usr/bin/env bash
# The GPU check (under 8 minutes on one GPU): run from anywhere on a machine with CUDA and the
# project's dependencies installed (`.venv/bin/python` if there is one, else `python3`; PY=... overrides).
# It prints: the test suite on CUDA; the vector env on CUDA at 4096, 16384 and 65536 matches (3v3),
# eager and compiled; the GRPO and PPO iteration at a batch that fills the GPU; a 2-minute quick
# GRPO run and a 1-minute tiny LLM run in bf16; each with its peak GPU memory.
# Exit status: non-zero if any step failed (the others still run).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export SDL_VIDEODRIVER=dummy PYGAME_HIDE_SUPPORT_PROMPT=1 PYTHONUNBUFFERED=1
RUNS=$(mktemp -d /tmp/gpu-check-XXXX)
failed=()

step() {  # step SECONDS command...: run with a time limit, note a failure, go on
    local limit=$1; shift
    echo; echo "=== $* (limit ${limit} s)"
    local start=$SECONDS
    timeout "$limit" "$@" || failed+=("$*")
    echo "--- $(( SECONDS - start )) s"
}

"$PY" - <<'PY' || exit 1
import torch
assert torch.cuda.is_available(), "no CUDA device: this check needs a GPU"
print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, "
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
PY

step 180 "$PY" -m pytest -q -x -n 8 --device cuda tests/
for matches in 4096 16384 65536; do
    step 90 "$PY" -m marl_grpo bench env --device cuda --num-envs "$matches" --no-peers --no-sweep --no-pettingzoo
done
step 40 "$PY" -m marl_grpo bench train --device cuda --algo grpo --num-envs 16384 --threads 4
step 40 "$PY" -m marl_grpo bench train --device cuda --algo ppo --num-envs 16384 --threads 4
step 150 "$PY" -m marl_grpo train --preset quick --device cuda --max-minutes 2 --no-progress --log-dir "$RUNS"
step 90 "$PY" -m marl_grpo llm --preset tiny --device cuda --bf16 --max-minutes 1 --no-progress --log-dir "$RUNS"

echo
if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "gpu_check: every step passed (runs in $RUNS)"
