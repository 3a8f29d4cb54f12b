"""Policy throughput: `python scripts/bench_policy.py [--threads 2] [--batch 4096] [--device cpu]`.

For each architecture it measures, on observations of a real vector env,
- act:   forward + sample under no_grad (`policy.act`), in samples (player rows) per second;
- train: forward + backward + Adam step of `-logp.mean() - 0.01 * entropy.mean()` (`policy.evaluate`);
and prints the parameter counts.
"""

from __future__ import annotations

import argparse
import time

import torch

from marl_grpo.agents.policy import SoccerPolicy
from marl_grpo.envs import SoccerVecEnv

VARIANTS = (
    ("mlp", {}),
    ("entity", {"pool": "meanmax"}),
    ("entity", {"pool": "attention"}),
)


def rate(fn, rows: int, seconds: float, device: torch.device, repeats: int = 5) -> float:
    """Rows per second of `fn()`: the best of `repeats` windows of `seconds / repeats` each,
    after two warm-up calls (the best window is the least disturbed by other processes)."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):
        fn()
    sync()
    best = 0.0
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / repeats:
                break
        best = max(best, calls * rows / elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=4096, help="player rows per call")
    parser.add_argument("--team-sizes", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'auto'")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(f"batch {args.batch} rows, {args.threads} threads, device {args.device}, hidden {args.hidden}")
    print(f"{'arch':<20}{'team':>6}{'params':>9}{'act rows/s':>14}{'train rows/s':>15}")
    for team_size in args.team_sizes:
        env = SoccerVecEnv(num_envs=max(1, args.batch // (2 * team_size)), device="cpu", team_size=team_size)
        obs = env.reset(seed=0)
        env.step(torch.randint(0, 10, (env.num_envs, env.num_agents)))
        for arch, extra in VARIANTS:
            policy = SoccerPolicy(env.config if arch == "mlp" else None, arch=arch, hidden=args.hidden,
                                  device=args.device, **extra)
            rows = obs.reshape(-1, obs.shape[-1])
            rows = rows.repeat((args.batch + rows.shape[0] - 1) // rows.shape[0], 1)[: args.batch].to(policy.device)
            optimizer = torch.optim.Adam(policy.parameters(), lr=3e-4)
            actions, _ = policy.act(rows)

            def train_step() -> None:
                logp, entropy = policy.evaluate(rows, actions)
                loss = -logp.mean() - 0.01 * entropy.mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            act_rate = rate(lambda: policy.act(rows), args.batch, args.seconds, policy.device)
            train_rate = rate(train_step, args.batch, args.seconds, policy.device)
            name = arch + (f"/{extra['pool']}" if extra else "")
            print(f"{name:<20}{f'{team_size}v{team_size}':>6}{policy.num_parameters():>9}"
                  f"{act_rate:>14,.0f}{train_rate:>15,.0f}")


if __name__ == "__main__":
    main()
