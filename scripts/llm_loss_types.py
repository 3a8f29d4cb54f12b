"""The tiny LLM's greedy reward after the same minutes for several TRL loss types and seeds.

    python scripts/llm_loss_types.py [--minutes 3] [--seeds 1 2] [--log-dir runs/loss-types]
    python scripts/llm_loss_types.py --iterations 1242 --threads 1   # equal iterations instead

Each run is `marl-grpo llm --preset tiny --max-minutes M --loss-type ...` (a normal run folder);
the table printed at the end is each run's last greedy evaluation on the held-out prompts.
With `--minutes`, run it alone on the machine (the budget is wall-clock time); with
`--iterations` (the learning rate then anneals over those iterations) runs may share it.
"""

import argparse
import json
from pathlib import Path

from marl_grpo.cli import main
from marl_grpo.run.files import RESULT_FILE

VARIANTS = {
    "grpo": ["--loss-type", "grpo"],
    "dapo": ["--loss-type", "dapo"],
    "dr_grpo": ["--loss-type", "dr_grpo"],
    "cispo": ["--loss-type", "cispo", "--clip-eps-high", "5"],  # TRL's epsilon_high as CISPO's cap (ScaleRL: 5)
    "sapo": ["--loss-type", "sapo"],
    "gspo": ["--loss-type", "grpo", "--ratio-level", "sequence"],
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--iterations", type=int, default=None, help="a budget in iterations instead of minutes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--log-dir", default="runs/loss-types")
    parser.add_argument("--extra", default="", help="more `marl-grpo llm` options for every run, one string")
    args = parser.parse_args()
    rows = []
    for name in args.variants:
        finals = []
        for seed in args.seeds:
            run = f"llm-{name}-s{seed}"
            if not (Path(args.log_dir) / run / RESULT_FILE).exists():
                budget = ["--max-minutes", str(args.minutes)] if args.iterations is None else [
                    "--max-minutes", "0", "--total-iterations", str(args.iterations)]
                main(["llm", "--preset", "tiny", "--name", run, "--log-dir", args.log_dir, "--seed", str(seed),
                      "--threads", str(args.threads), "--no-progress", *budget, *args.extra.split(),
                      *VARIANTS[name]])
            result = json.loads((Path(args.log_dir) / run / RESULT_FILE).read_text())
            finals.append((result["eval"]["eval/reward_greedy"], result["iteration"]))
        rows.append((name, finals))
    print("\n| loss | flags | greedy reward per seed | mean | iterations |")
    print("|---|---|---|---|---|")
    for name, finals in rows:
        rewards = [f"{r:.3f}" for r, _ in finals]
        mean = sum(r for r, _ in finals) / len(finals)
        print(f"| {name} | `{' '.join(VARIANTS[name])}` | {', '.join(rewards)} | {mean:.3f} | "
              f"{', '.join(str(i) for _, i in finals)} |")
