"""marl_grpo.envs: the soccer rules (batched engine), the PettingZoo env and the vector env.

    from marl_grpo.envs import soccer_v0, SoccerVecEnv
    env = soccer_v0.parallel_env(team_size=2)             # PettingZoo ParallelEnv
    vec = SoccerVecEnv(num_envs=4096, team_size=3)        # batched torch env, auto-reset

The env is also registered with PettingZoo: `pettingzoo.make("parallel", "marl_grpo/soccer-v0")`.
"""

from .config import ACTION_NAMES, KICK_ACTION, NUM_ACTIONS, REWARD_COMPONENTS, SoccerConfig
from .soccer import SoccerEngine
from .vector import SoccerVecEnv

ENV_ID = "marl_grpo/soccer-v0"


def _register() -> None:
    try:
        from pettingzoo import aec_registry, parallel_registry, register
    except ImportError:  # an older PettingZoo without a registry
        return
    if ENV_ID not in aec_registry:
        register("aec", ENV_ID, entry_point="marl_grpo.envs.soccer_v0:env")
    if ENV_ID not in parallel_registry:
        register("parallel", ENV_ID, entry_point="marl_grpo.envs.soccer_v0:parallel_env")


_register()

__all__ = [
    "ACTION_NAMES",
    "ENV_ID",
    "KICK_ACTION",
    "NUM_ACTIONS",
    "REWARD_COMPONENTS",
    "SoccerConfig",
    "SoccerEngine",
    "SoccerVecEnv",
]
