"""Soccer learning: config, GRPO group modes, rollout, learners (GRPO, PPO), evaluation, training.

    from marl_grpo.rl import TrainConfig, train
    result = train(TrainConfig(name="my-run", total_env_steps=1_000_000))
"""

from marl_grpo.rl.config import PRESETS, TrainConfig, preset
from marl_grpo.rl.evaluate import play_matches
from marl_grpo.rl.groups import GROUP_MODES, GroupMode, Groups
from marl_grpo.rl.learners import ALGOS, LEARNERS
from marl_grpo.rl.opponent import PolicyOpponent, load_opponent
from marl_grpo.rl.train import SoccerTrainer, train

__all__ = ["ALGOS", "GROUP_MODES", "LEARNERS", "PRESETS", "GroupMode", "Groups", "PolicyOpponent", "SoccerTrainer",
           "TrainConfig", "load_opponent", "play_matches", "preset", "train"]
