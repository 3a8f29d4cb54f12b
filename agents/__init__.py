"""marl_grpo.agents: whatever picks actions (scripted bots, policies).

    from marl_grpo.agents import make_bot
    bot = make_bot("team", env.config, strength=1.0, seed=0)   # "random", "chaser" or "team"
    actions = bot.act(obs)                                      # obs [B, N, D] -> int64 [B, N]
    red = load_policy_opponent(path, env.config)                # a checkpoint, with the same act()

The scripted bots are defined in `marl_grpo.envs.bots` (the env plays them as `opponent=`, and the
envs import only the envs) and are re-exported here.
"""

from marl_grpo.envs import bots
from marl_grpo.envs.bots import *  # noqa: F403 (each module's __all__ is the public surface)

from . import critic, opponent, policy
from .critic import *  # noqa: F403
from .opponent import *  # noqa: F403
from .policy import *  # noqa: F403

__all__ = [*bots.__all__, *policy.__all__, *critic.__all__, *opponent.__all__]
