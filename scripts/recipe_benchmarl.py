"""Recipe: BenchMARL MAPPO on the soccer env, added as a custom BenchMARL task.

Install (the `benchmarl` extra; BenchMARL 1.5.2 requires torchrl>=0.10,<0.12, so it gets its
own venv when the main one has torchrl 0.14 from the `test` extra):

    python -m venv .venv-benchmarl && .venv-benchmarl/bin/pip install -e ".[benchmarl]"
    # = benchmarl==1.5.2 (pulls torchrl 0.11.1, tensordict 0.11, hydra-core, torchvision)

Run (no network needed; nothing is written outside a temporary folder):

    python scripts/recipe_benchmarl.py                    # 3 iterations x 200 frames, ~20 s
    python scripts/recipe_benchmarl.py --iterations 500 --frames-per-batch 6000 --max-cycles 300
    python scripts/recipe_benchmarl.py --opponent team    # the team bot plays red in the env: only blue learns

The glue (`SoccerTaskClass`, `SoccerTask`) is what BenchMARL's "extending: tasks" docs ask for:
a `TaskClass` that says how to build the env (a TorchRL `PettingZooWrapper` over
`soccer_v0.parallel_env`) and where its specs are, and a `Task` enum naming the task. It reuses
BenchMARL's PettingZoo task class for the spec plumbing. BenchMARL then trains one MAPPO policy
per group (`blue`, `red`: the wrapper groups agents by name prefix) with a centralised critic on
the env's global state, and logs the reward components from the infos
(`collection/<group>/info/reward_goal`, ...) to whatever loggers you configure. It ends by scoring
the trained `blue` policy (its most likely actions) against the team bot with `marl_grpo.evaluate`
(`--eval-matches` matches, seeds `--seed` onwards).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import marl_grpo  # registers the env with PettingZoo; marl_grpo.evaluate scores the trained policy
import torch
from benchmarl.algorithms import MappoConfig
from benchmarl.environments.common import Task
from benchmarl.environments.pettingzoo.common import PettingZooClass
from benchmarl.experiment import Experiment, ExperimentConfig
from benchmarl.models.mlp import MlpConfig
from torchrl.envs import PettingZooWrapper

from marl_grpo.agents import env_opponent
from marl_grpo.envs import SoccerConfig, soccer_v0


# ---------------------------------------------------------------- the task glue (~25 lines)
class SoccerTaskClass(PettingZooClass):
    """marl-grpo soccer as a BenchMARL task; the config is soccer_v0.parallel_env's kwargs."""

    def get_env_fun(self, num_envs, continuous_actions, seed, device):
        config = copy.deepcopy(self.config)
        opponent = config.pop("opponent", None)

        def make_env():  # each env its own opponent (a bot name, or a checkpoint folder loaded here)
            red = env_opponent(opponent, SoccerConfig.from_kwargs(**config))
            return PettingZooWrapper(soccer_v0.parallel_env(**config, opponent=red), categorical_actions=True,
                                     return_state=True, seed=seed, device=device)
        return make_env

    def supports_continuous_actions(self) -> bool:
        return False

    def supports_discrete_actions(self) -> bool:
        return True

    def has_state(self) -> bool:
        return True  # env.state(): the world-frame global state, for the centralised critic

    def has_render(self, env) -> bool:
        return False  # rgb_array frames need render_mode="rgb_array"; off for training

    @staticmethod
    def env_name() -> str:
        return "marl_grpo_soccer"


class SoccerTask(Task):
    SOCCER = None

    @staticmethod
    def associated_class():
        return SoccerTaskClass
# ----------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--frames-per-batch", type=int, default=200)
    p.add_argument("--envs", type=int, default=2, help="matches collected together (SerialEnv)")
    p.add_argument("--minibatch-size", type=int, default=100)
    p.add_argument("--minibatch-iters", type=int, default=4, help="optimiser steps per iteration")
    p.add_argument("--team-size", type=int, default=2)
    p.add_argument("--max-cycles", type=int, default=50, help="steps per match (300 is the env default)")
    p.add_argument("--opponent", default="none",
                   help="none (self-play: both groups learn), team, chaser, random (a bot plays red inside the "
                        "env) or PATH (a marl-grpo checkpoint folder plays red); then only the group blue learns")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-matches", type=int, default=100,
                   help="matches of the final score against the team bot (marl_grpo.evaluate)")
    return p.parse_args(argv)


def blue_player(experiment: Experiment, device: str):
    """The trained policy of the group `blue` as a `marl_grpo.evaluate` callable: torch obs [B, N, D]
    -> its most likely actions [B, N] (BenchMARL's actor for that group, in deterministic mode)."""
    from tensordict import TensorDict
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    actor = experiment.group_policies["blue"]

    def act(obs: torch.Tensor) -> torch.Tensor:
        batch = TensorDict({"blue": {"observation": obs.to(device)}}, batch_size=[obs.shape[0]])
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            return actor(batch)["blue", "action"]
    return act


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    task = SoccerTask.SOCCER.get_task(config={"team_size": args.team_size, "max_cycles": args.max_cycles,
                                              "opponent": args.opponent})

    config = ExperimentConfig.get_from_yaml()
    config.sampling_device = config.train_device = config.buffer_device = device
    config.lr = args.lr
    config.max_n_iters, config.max_n_frames = args.iterations, None
    config.on_policy_collected_frames_per_batch = args.frames_per_batch
    config.on_policy_n_envs_per_worker = args.envs
    config.on_policy_minibatch_size = args.minibatch_size
    config.on_policy_n_minibatch_iters = args.minibatch_iters
    config.evaluation, config.render, config.loggers, config.create_json = False, False, [], False
    config.checkpoint_interval, config.checkpoint_at_end = 0, False

    returns: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        config.save_folder = folder
        experiment = Experiment(task=task, algorithm_config=MappoConfig.get_from_yaml(),
                                model_config=MlpConfig.get_from_yaml(),
                                critic_model_config=MlpConfig.get_from_yaml(), seed=args.seed, config=config)
        print(f"device={device} groups={experiment.group_map}")
        log_collection = experiment.logger.log_collection
        start = time.perf_counter()

        def log_and_print(batch, task, total_frames, step):  # BenchMARL's own per-iteration figures
            mean = log_collection(batch, task, total_frames, step)
            goal = {g: batch["next", g, "info", "reward_goal"].sum().item() for g in experiment.group_map}
            print(f"iter {step}: episode_reward_mean={mean:+.4f} (mean over groups)  frames={total_frames}  "
                  f"reward_goal sums={goal}  ({time.perf_counter() - start:.1f} s)")
            returns.append(mean)
            return mean

        experiment.logger.log_collection = log_and_print
        experiment.run()
    score = marl_grpo.evaluate(blue_player(experiment, device), team_size=args.team_size, opponent="team",
                               matches=args.eval_matches, seed=args.seed, obs_type="torch", device=device,
                               max_cycles=args.max_cycles)
    print(f"the trained blue policy, scored by marl_grpo.evaluate:\n{score}")
    return {"returns": returns, "score": score}


if __name__ == "__main__":
    main()
