"""Recipe: Ray RLlib multi-agent PPO on the soccer env, ONE policy shared by every player.

Install (the `rllib` extra; Ray 2.60's rllib extra pins gymnasium==1.2.2, so use a venv of its own
if you need a newer gymnasium elsewhere):

    pip install -e ".[rllib]"           # = ray[rllib]==2.60.*

Run (starts a local Ray instance on this machine only; no network needed):

    python scripts/recipe_rllib.py                        # 2 iterations x 400 env steps, ~30 s
    python scripts/recipe_rllib.py --iterations 100 --train-batch-size 4000 --max-cycles 300
    python scripts/recipe_rllib.py --device cuda          # the learner on the GPU (auto: if there)

What it shows:

- `ParallelPettingZooEnv(soccer_v0.parallel_env(...))` registered with `register_env`; every agent
  (`blue_0`, ..., `red_1`) maps to the policy `shared`: self-play with one set of weights, which
  works because each observation is in the player's own mirrored frame (it always attacks +x)
  and carries a team one-hot.
- The new RLlib API stack: `num_env_runners=0` samples in the driver process, a small
  `train_batch_size_per_learner`, and `result["env_runners"]["episode_return_mean"]` (summed
  over all players of a match, so a zero-sum goal term cancels: look at the per-agent returns).
- Rendering through RLlib's wrapper: `ParallelPettingZooEnv.render()` calls
  `par_env.render(self.render_mode)`; our env takes and ignores that argument and renders in the
  mode it was built with (`render_mode="rgb_array"` gives an [H, W, 3] uint8 array).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # rgb_array rendering without a display
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report at run time

import marl_grpo  # noqa: E402,F401  (registers the env; its thread policy applies to the torch imported next)
import ray  # noqa: E402
import torch  # noqa: E402
from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec  # noqa: E402
from ray.rllib.core.rl_module.rl_module import RLModuleSpec  # noqa: E402
from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv  # noqa: E402
from ray.tune.registry import register_env  # noqa: E402

from marl_grpo.envs import soccer_v0  # noqa: E402

ENV_NAME = "marl_grpo_soccer"


def env_creator(env_config: dict) -> ParallelPettingZooEnv:
    return ParallelPettingZooEnv(soccer_v0.parallel_env(**env_config))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--train-batch-size", type=int, default=400, help="env steps per training iteration")
    p.add_argument("--minibatch-size", type=int, default=200)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--team-size", type=int, default=2)
    p.add_argument("--max-cycles", type=int, default=50, help="steps per match (300 is the env default)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--device", default="auto", help="auto (learner on cuda if available), cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def check_render(team_size: int) -> tuple:
    """Render one frame through RLlib's wrapper (rgb_array), returning the frame's shape."""
    wrapped = ParallelPettingZooEnv(soccer_v0.parallel_env(team_size=team_size, render_mode="rgb_array"))
    frame = wrapped.render()  # RLlib calls par_env.render(None) here
    wrapped.close()
    assert frame is not None and frame.ndim == 3 and frame.shape[-1] == 3, frame
    return tuple(frame.shape)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    use_gpu = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    print(f"render through ParallelPettingZooEnv: frame shape {check_render(args.team_size)}")

    env_config = {"team_size": args.team_size, "max_cycles": args.max_cycles}
    register_env(ENV_NAME, env_creator)
    ray.init(num_cpus=2, num_gpus=1 if use_gpu else 0, include_dashboard=False,
             ignore_reinit_error=True, log_to_driver=False)
    config = (
        PPOConfig()
        .environment(ENV_NAME, env_config=env_config)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .learners(num_learners=0, num_gpus_per_learner=1 if use_gpu else 0)
        .multi_agent(policies={"shared"}, policy_mapping_fn=lambda agent_id, *a, **kw: "shared")
        .rl_module(rl_module_spec=MultiRLModuleSpec(
            rl_module_specs={"shared": RLModuleSpec(model_config={"fcnet_hiddens": [64, 64]})}))
        .training(train_batch_size_per_learner=args.train_batch_size, minibatch_size=args.minibatch_size,
                  num_epochs=args.epochs, lr=args.lr)
        .debugging(seed=args.seed)
    )
    algo = config.build_algo()
    history = []
    start = time.perf_counter()
    try:
        for it in range(args.iterations):
            result = algo.train()
            runners = result["env_runners"]
            row = {
                "iteration": it,
                "env_steps": runners.get("num_env_steps_sampled_lifetime"),
                "episode_return_mean": runners.get("episode_return_mean"),
                "agent_episode_returns_mean": runners.get("agent_episode_returns_mean", {}),
                "episodes": runners.get("num_episodes_lifetime"),
            }
            history.append(row)
            agents = "  ".join(f"{a}={v:+.3f}" for a, v in sorted(row["agent_episode_returns_mean"].items()))
            print(f"iter {it}: episode_return_mean={row['episode_return_mean']} (all players)  {agents}  "
                  f"env_steps={row['env_steps']} episodes={row['episodes']}  "
                  f"({time.perf_counter() - start:.1f} s)")
    finally:
        algo.stop()
        ray.shutdown()
    return history


if __name__ == "__main__":
    main()
