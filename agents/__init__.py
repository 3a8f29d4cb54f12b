"""marl_grpo.agents: whatever picks actions (scripted bots, policies).

    from marl_grpo.agents import make_bot
    bot = make_bot("team", env.config, strength=1.0, seed=0)   # "random", "chaser" or "team"
    actions = bot.act(obs)                                      # obs [B, N, D] -> int64 [B, N]
"""

from .bots import BOT_NAMES, Bot, ChaserBot, ObsView, RandomBot, TeamBot, direction_to_action, make_bot

__all__ = [
    "BOT_NAMES",
    "Bot",
    "ChaserBot",
    "ObsView",
    "RandomBot",
    "TeamBot",
    "direction_to_action",
    "make_bot",
]

from .policy import ARCHS, POOLS, SoccerPolicy, layout_from_obs_dim, logp_entropy, sample_actions

__all__ += [
    "ARCHS",
    "POOLS",
    "SoccerPolicy",
    "layout_from_obs_dim",
    "logp_entropy",
    "sample_actions",
]

from .critic import CRITIC_KINDS, SoccerCritic

__all__ += ["CRITIC_KINDS", "SoccerCritic"]
