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

# The LLM agent needs the optional `transformers` extra: its names load on first use, so that
# `import marl_grpo.agents` never imports transformers.
_LAZY = {
    "LLMAgent": "llm", "Completions": "llm", "build_tiny_model": "llm", "build_tiny_tokenizer": "llm",
    "ACTION_WORDS": "llm_text", "parse_answer": "llm_text", "render_direction": "llm_text",
    "render_soccer": "llm_text", "vocabulary": "llm_text",
}
__all__ += list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
