"""marl_grpo.agents: whatever picks actions (scripted bots, policies).

    from marl_grpo.agents import make_bot
    bot = make_bot("team", env.config, strength=1.0, seed=0)   # "random", "chaser" or "team"
    actions = bot.act(obs)                                      # obs [B, N, D] -> int64 [B, N]
"""

from . import bots, critic, policy
from .bots import *  # noqa: F403 (each module's __all__ is the public surface)
from .critic import *  # noqa: F403
from .policy import *  # noqa: F403

__all__ = [*bots.__all__, *policy.__all__, *critic.__all__]
