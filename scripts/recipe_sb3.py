"""Recipe: Stable-Baselines3 PPO on the soccer env through SuperSuit (one policy, every player).

Install (the `sb3` extra):

    pip install -e ".[sb3]"             # = stable-baselines3 + supersuit

Run (no network needed):

    python scripts/recipe_sb3.py                          # 2 x 2 matches, 2048 agent steps, ~15 s
    python scripts/recipe_sb3.py --timesteps 2000000 --num-vec-envs 8 --max-cycles 300
    python scripts/recipe_sb3.py --opponent team          # the team bot plays red in the env: blue's 2 slots

What it shows:

- `supersuit.pettingzoo_env_to_vec_env_v1(parallel_env)` turns one match into a vector env with
  one slot per player (all players share the observation and action spaces), and
  `concat_vec_envs_v1(..., base_class="stable_baselines3")` stacks several matches into one SB3
  `VecEnv`: 4 players x `--num-vec-envs` matches. SB3 then trains ONE policy over all slots
  (self-play with shared weights; each observation is in the player's own mirrored frame).
- `black_death_v3` is not needed: every player of a match ends on the same step.
- `VecMonitor` gives SB3 its `ep_rew_mean` (per player, per match).
- The env's per-agent infos (`reward_goal`, ..., `score_for`, `score_against`) arrive in SB3's
  `infos` list, one dict per slot; the script prints one.
- Observation scaling: `--normalize-obs` adds SuperSuit's `normalize_obs_v0`, which maps each
  feature from the observation space's (finite) bounds to [0, 1]; it refuses a space with
  infinite bounds, as the env had before its bounds were made finite. Off by default: the raw
  features are already O(1) (positions in half lengths, velocities in top speeds), and SB3's
  `VecNormalize` (running statistics) is the other choice.
- It ends by scoring the trained policy as blue (its most likely actions) against the team bot
  with `marl_grpo.evaluate` (`--eval-matches` matches, seeds `--seed` onwards).
"""

from __future__ import annotations

import argparse
import time

import marl_grpo  # registers the env with PettingZoo; marl_grpo.evaluate scores the trained policy
import numpy as np
import supersuit as ss
from stable_baselines3 import PPO
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecMonitor

from marl_grpo.agents import env_opponent
from marl_grpo.envs import SoccerConfig, soccer_v0


def make_vec_env(team_size: int = 2, max_cycles: int = 50, num_vec_envs: int = 2, seed: int = 0,
                 normalize_obs: bool = False, opponent: str | None = None):
    # `opponent` (a bot name or a checkpoint folder) plays red inside the env: the slots are blue's only
    red = env_opponent(opponent, SoccerConfig(team_size=team_size))
    env = soccer_v0.parallel_env(team_size=team_size, max_cycles=max_cycles, opponent=red)
    if normalize_obs:
        env = ss.normalize_obs_v0(env, env_min=0.0, env_max=1.0)
    vec = ss.pettingzoo_env_to_vec_env_v1(env)
    # num_cpus=0: the matches step in this process (set > 0 for subprocesses on a bigger machine).
    vec = ss.concat_vec_envs_v1(vec, num_vec_envs, num_cpus=0, base_class="stable_baselines3")
    # SuperSuit's SB3 wrapper has no working `seed()` (its ConcatVecEnv only takes `reset(seed=)`), so
    # seed the matches once through the inner vec env (match i gets seed + i); later resets go on
    # with each match's own random stream. For the same reason PPO gets no `seed=` (it would call
    # env.seed()): torch/numpy are seeded with `set_random_seed` instead.
    vec.venv.reset(seed=seed)
    return VecMonitor(vec)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--timesteps", type=int, default=2048, help="agent steps in total (all slots)")
    p.add_argument("--n-steps", type=int, default=128, help="steps per slot per rollout")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--num-vec-envs", type=int, default=2, help="matches stepped together")
    p.add_argument("--team-size", type=int, default=2)
    p.add_argument("--max-cycles", type=int, default=50, help="steps per match (300 is the env default)")
    p.add_argument("--opponent", default="none",
                   help="none (self-play: every player is a slot), team, chaser, random (a bot plays red inside "
                        "the env) or PATH (a marl-grpo checkpoint folder plays red); then the slots are blue's")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--normalize-obs", action="store_true", help="SuperSuit normalize_obs_v0 (to [0, 1])")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-matches", type=int, default=100,
                   help="matches of the final score against the team bot (marl_grpo.evaluate)")
    return p.parse_args(argv)


def blue_player(model: PPO, team_size: int, max_cycles: int, normalize_obs: bool):
    """The trained policy (shared by every player) as a `marl_grpo.evaluate` callable for blue:
    numpy obs [B, N, D] -> its most likely actions [B, N], one `predict` over all B * N rows. With
    `--normalize-obs` the rows are mapped to [0, 1] first, as SuperSuit's `normalize_obs_v0` maps
    them: (obs - low) / (high - low) with the observation space's bounds."""
    env = soccer_v0.parallel_env(team_size=team_size, max_cycles=max_cycles)
    space = env.observation_space(env.possible_agents[0])
    env.close()

    def act(obs: np.ndarray) -> np.ndarray:
        if normalize_obs:
            obs = (obs - space.low) / (space.high - space.low)
        actions, _ = model.predict(obs.reshape(-1, obs.shape[-1]), deterministic=True)
        return actions.reshape(obs.shape[:2])
    return act


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    set_random_seed(args.seed)
    env = make_vec_env(args.team_size, args.max_cycles, args.num_vec_envs, args.seed, args.normalize_obs,
                       args.opponent)
    space = env.observation_space
    print(f"SB3 VecEnv: {env.num_envs} slots (players x matches), obs Box{space.shape} in "
          f"[{space.low.min():.3g}, {space.high.max():.3g}], actions {env.action_space}")
    env.reset()
    _, _, _, infos = env.step(np.zeros(env.num_envs, dtype=np.int64))
    print(f"infos[0] after one step: {infos[0]}")

    model = PPO("MlpPolicy", env, n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=args.epochs,
                learning_rate=args.lr, policy_kwargs={"net_arch": [64, 64]}, device=args.device,
                verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=args.timesteps)
    wall = time.perf_counter() - start
    returns = [ep["r"] for ep in model.ep_info_buffer]
    mean_return = float(np.mean(returns)) if returns else float("nan")
    print(f"device={model.device} timesteps={model.num_timesteps} episodes(per player)={len(returns)} "
          f"ep_rew_mean={mean_return:+.4f} train/loss={model.logger.name_to_value.get('train/loss')} "
          f"({wall:.1f} s)")
    env.close()
    # numpy in, numpy out: the scoring matches run on the CPU, whatever device PPO trained on
    score = marl_grpo.evaluate(blue_player(model, args.team_size, args.max_cycles, args.normalize_obs),
                               team_size=args.team_size, opponent="team", matches=args.eval_matches, seed=args.seed,
                               device="cpu", max_cycles=args.max_cycles)
    print(f"the trained policy as blue, scored by marl_grpo.evaluate:\n{score}")
    return {"ep_rew_mean": mean_return, "episodes": len(returns), "timesteps": model.num_timesteps, "score": score}


if __name__ == "__main__":
    main()
