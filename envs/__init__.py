"""marl_grpo.envs: the soccer rules (batched engine), the PettingZoo env and the vector env.

    from marl_grpo.envs import soccer_v0, SoccerVecEnv
    env = soccer_v0.parallel_env(team_size=2)             # PettingZoo ParallelEnv
    vec = SoccerVecEnv(num_envs=4096, team_size=3)        # batched torch env, auto-reset

`import marl_grpo` registers the env with PettingZoo: `pettingzoo.make("parallel", "marl_grpo/soccer-v0")`.
"""

from .config import ACTION_NAMES, INFO_KEYS, KICK_ACTION, NUM_ACTIONS, REWARD_COMPONENTS, SoccerConfig
from .soccer import SoccerEngine
from .vector import SoccerVecEnv

ENV_ID = "marl_grpo/soccer-v0"  # registered by `import marl_grpo` (marl_grpo.ENV_ID; envs imports only envs)

__all__ = [
    "ACTION_NAMES",
    "ENV_ID",
    "INFO_KEYS",
    "KICK_ACTION",
    "NUM_ACTIONS",
    "REWARD_COMPONENTS",
    "SoccerConfig",
    "SoccerEngine",
    "SoccerVecEnv",
]
