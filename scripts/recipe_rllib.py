"""Recipe: Ray RLlib multi-agent PPO on the soccer env, ONE policy shared by every player.

Install (the `rllib` extra; Ray 2.60's rllib extra pins gymnasium==1.2.2, so use a venv of its own
if you need a newer gymnasium elsewhere):

    pip install -e ".[rllib]"           # = ray[rllib]==2.60.*

Run (starts a local Ray instance on this machine only; no network needed):

    python scripts/recipe_rllib.py                        # 2 iterations x 400 env steps, ~30 s
    python scripts/recipe_rllib.py --iterations 100 --train-batch-size 4000 --max-cycles 300
    python scripts/recipe_rllib.py --device cuda          # the learner on the GPU (auto: if there)
    python scripts/recipe_rllib.py --opponent team        # the team bot plays red in the env: blue learns

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
- It ends by scoring the trained `shared` policy as blue (its most likely actions) against the team
  bot with `marl_grpo.evaluate` (`--eval-matches` matches, seeds `--seed` onwards).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # rgb_array rendering without a display
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report at run time

import marl_grpo  # noqa: E402  (registers the env with PettingZoo; marl_grpo.evaluate scores the trained policy)
import ray  # noqa: E402
import torch  # noqa: E402
from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec  # noqa: E402
from ray.rllib.core.rl_module.rl_module import RLModuleSpec  # noqa: E402
from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv  # noqa: E402
from ray.tune.registry import register_env  # noqa: E402

from marl_grpo.agents import env_opponent  # noqa: E402
from marl_grpo.envs import SoccerConfig, soccer_v0  # noqa: E402

ENV_NAME = "marl_grpo_soccer"


def env_creator(env_config: dict) -> ParallelPettingZooEnv:
    kwargs = dict(env_config)
    opponent = kwargs.pop("opponent", None)  # a bot name, or a checkpoint folder loaded here for each env
    red = env_opponent(opponent, SoccerConfig.from_kwargs(**kwargs))
    return ParallelPettingZooEnv(soccer_v0.parallel_env(**kwargs, opponent=red))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--train-batch-size", type=int, default=400, help="env steps per training iteration")
    p.add_argument("--minibatch-size", type=int, default=200)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--team-size", type=int, default=2)
    p.add_argument("--max-cycles", type=int, default=50, help="steps per match (300 is the env default)")
    p.add_argument("--opponent", default="none",
                   help="none (self-play: every player maps to 'shared'), team, chaser, random (a bot plays red "
                        "inside the env) or PATH (a marl-grpo checkpoint folder plays red); then only blue learns")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--device", default="auto", help="auto (learner on cuda if available), cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-matches", type=int, default=100,
                   help="matches of the final score against the team bot (marl_grpo.evaluate)")
    return p.parse_args(argv)


def check_render(team_size: int) -> tuple:
    """Render one frame through RLlib's wrapper (rgb_array), returning the frame's shape."""
    wrapped = ParallelPettingZooEnv(soccer_v0.parallel_env(team_size=team_size, render_mode="rgb_array"))
    frame = wrapped.render()  # RLlib calls par_env.render(None) here
    wrapped.close()
    assert frame is not None and frame.ndim == 3 and frame.shape[-1] == 3, frame
    return tuple(frame.shape)


def blue_player(module):
    """The trained `shared` RLModule as a `marl_grpo.evaluate` callable for blue: torch obs [B, N, D]
    -> its most likely actions [B, N] (the argmax of `forward_inference`'s action logits), one
    forward pass over all B * N rows."""
    from ray.rllib.core.columns import Columns

    def act(obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = module.forward_inference({Columns.OBS: obs.reshape(-1, obs.shape[-1])})
        return out[Columns.ACTION_DIST_INPUTS].argmax(-1).reshape(obs.shape[:2])
    return act


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    use_gpu = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    print(f"render through ParallelPettingZooEnv: frame shape {check_render(args.team_size)}")

    env_config = {"team_size": args.team_size, "max_cycles": args.max_cycles, "opponent": args.opponent}
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
        # the local EnvRunner's module (num_env_runners=0: this process, on the CPU), synced after each update
        score = marl_grpo.evaluate(blue_player(algo.get_module("shared")), team_size=args.team_size,
                                   opponent="team", matches=args.eval_matches, seed=args.seed, obs_type="torch",
                                   device="cpu", max_cycles=args.max_cycles)
        print(f"the trained policy as blue, scored by marl_grpo.evaluate:\n{score}")
    finally:
        algo.stop()
        ray.shutdown()
    return {"history": history, "score": score}


if __name__ == "__main__":
    main()
