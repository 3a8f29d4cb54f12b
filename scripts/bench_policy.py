"""Policy throughput: `python scripts/bench_policy.py [--threads 2] [--batch 4096] [--device cpu]`.

For each architecture, on observations of a real vector env, it measures
- act:   forward + sample under no_grad (`policy.act`), in samples (player rows) per second;
- train: forward + backward + Adam step of `-logp.mean() - 0.01 * entropy.mean()` (`policy.logp_and_entropy`);
and prints the parameter counts. Each number is the fastest call seen over `--rounds` rounds
that interleave all the variants, so that a busy machine slows every variant alike and the best
call is the least disturbed one.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from marl_grpo.agents.policy import SoccerPolicy
from marl_grpo.envs import NUM_ACTIONS, SoccerConfig, SoccerVecEnv

VARIANTS = (
    ("mlp", {"arch": "mlp"}),
    ("entity/meanmax", {"arch": "entity", "pool": "meanmax"}),
    ("entity/attention", {"arch": "entity", "pool": "attention"}),
)


def observations(team_size: int, batch: int) -> torch.Tensor:
    """`batch` player rows [batch, D] of a vector env a few random steps after kickoff."""
    env = SoccerVecEnv(num_envs=-(-batch // (2 * team_size)), device="cpu", team_size=team_size)
    obs = env.reset(seed=0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        obs, *_ = env.step(torch.randint(0, NUM_ACTIONS, (env.num_envs, env.num_agents), generator=generator))
    return obs.reshape(-1, obs.shape[-1])[:batch].contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=4096, help="player rows per call")
    parser.add_argument("--team-sizes", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'auto'")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds of 5 timed calls each")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cases: list[tuple[str, int, int, Callable[[], object], Callable[[], None]]] = []
    for team_size in args.team_sizes:
        for name, kwargs in VARIANTS:
            layout = SoccerConfig(team_size=team_size) if kwargs["arch"] == "mlp" else None
            policy = SoccerPolicy(layout, hidden=args.hidden, device=args.device, **kwargs)
            rows = observations(team_size, args.batch).to(policy.device)
            optimizer = torch.optim.Adam(policy.parameters(), lr=3e-4)
            actions, _ = policy.act(rows)

            def act(policy=policy, rows=rows):
                return policy.act(rows)

            def train(policy=policy, rows=rows, actions=actions, optimizer=optimizer) -> None:
                logp, entropy = policy.logp_and_entropy(rows, actions)
                loss = -logp.mean() - 0.01 * entropy.mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            cases.append((name, team_size, policy.num_parameters(), act, train))

    device = torch.device(cases[0][3]()[0].device)
    best = [[float("inf"), float("inf")] for _ in cases]
    for _ in range(args.rounds):
        for i, (*_, act, train) in enumerate(cases):
            for j, fn in enumerate((act, train)):
                fn()  # warm-up
                for _ in range(5):
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    fn()
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    best[i][j] = min(best[i][j], time.perf_counter() - start)

    print(f"batch {args.batch} rows, {args.threads} threads, device {device}, hidden {args.hidden}")
    print(f"{'arch':<18}{'team':>6}{'params':>9}{'act rows/s':>14}{'train rows/s':>15}{'act ms':>9}{'train ms':>10}")
    for (name, team_size, params, *_), (act_s, train_s) in zip(cases, best):
        print(f"{name:<18}{f'{team_size}v{team_size}':>6}{params:>9}{args.batch / act_s:>14,.0f}"
              f"{args.batch / train_s:>15,.0f}{act_s * 1e3:>9.2f}{train_s * 1e3:>10.2f}")


if __name__ == "__main__":
    main()
