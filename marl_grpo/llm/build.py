"""What an LLM run config builds for the run: the autocast of the model's forward passes, the
`LLMPlayer` that asks and answers as the run does, and the task that draws the run's prompts.

    task = make_task(cfg, num_prompts, group_size, seed, device, agent=agent)
    player = make_player(cfg, agent, env_config, seed=seed)

This module sits below `evaluate`, `train` and `player`, which all use it, so that the modules
of `marl_grpo.llm` import one another one way only: `tasks` <- `config` <- `build` <-
`evaluate` <- `train` <- `player`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from marl_grpo.agents.checkpoint import load_policy
from marl_grpo.agents.llm_player import LLMPlayer
from marl_grpo.agents.llm_text import ACTION_WORDS, TextFormat
from marl_grpo.envs import SoccerConfig
from marl_grpo.llm.config import LLMConfig
from marl_grpo.llm.tasks import DirectionTask, SoccerTask, llm_player_indices
from marl_grpo.run.checkpoint import recover


def autocast(cfg: LLMConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast of the model's forward passes to `cfg.dtype` (off for float32): the weights stay float32."""
    return torch.autocast(device.type, dtype=cfg.torch_dtype, enabled=cfg.dtype != "float32")


def make_player(cfg: LLMConfig, agent: Any, env_config: SoccerConfig, decide_every: int | None = None,
                greedy: bool = False, seed: int = 0) -> LLMPlayer:
    """An `LLMPlayer` of `agent` that asks and answers as the run `cfg` does: its `TextFormat`,
    temperature, top-p, max_new_tokens and forward dtype; `decide_every` defaults to `cfg.horizon`."""
    device = agent.device
    text_format = TextFormat.from_config(cfg, ACTION_WORDS)
    agent.uses_chat_template(text_format)  # a template asked for but missing fails here, not mid-match
    generate_kwargs = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens}

    def forward_context() -> contextlib.AbstractContextManager:
        return autocast(cfg, device)

    return LLMPlayer(agent, env_config, decide_every=cfg.horizon if decide_every is None else decide_every,
                     greedy=greedy, text_format=text_format, generate_kwargs=generate_kwargs,
                     forward_context=forward_context, seed=seed)


def make_task(cfg: LLMConfig, num_prompts: int, group_size: int, seed: int, device: torch.device,
              stride: int | None = None, agent: Any = None) -> SoccerTask | DirectionTask:
    """The task of `cfg` drawing `num_prompts` match states per batch (`stride`: default `cfg.stride`),
    each prompting one drawn player or every player of `cfg.llm_players`. With `agent` (the
    trainer's) and `state_source="self"`, the LLM itself plays its seats of the source matches."""
    env_config = SoccerConfig(**cfg.env_kwargs())
    policy = None
    if cfg.others_checkpoint:
        recover(cfg.others_checkpoint)  # a save cut off by a crash: put the last whole checkpoint back
        policy, _ = load_policy(cfg.others_checkpoint, device=device, env_config=env_config)
    stride = cfg.stride if stride is None else stride
    llm_players = llm_player_indices(cfg.llm_players, env_config)
    common = {"env_kwargs": cfg.env_kwargs(), "bot": cfg.opponent, "bot_strength": cfg.opponent_strength,
              "policy": policy, "seed": seed, "device": device, "balance": cfg.balance, "llm_players": llm_players}
    if cfg.task == "soccer":
        task = SoccerTask(num_prompts, group_size, cfg.horizon, stride, **common)
    else:
        task = DirectionTask(num_prompts, group_size, stride, **common)
    if cfg.state_source == "self" and agent is not None:  # held-out sets (no `agent`) stay bot-played
        seats = llm_players or (task.source.config.agents.index("blue_0"),)
        task.source.let_llm_play(make_player(cfg, agent, task.source.config, seed=seed + 2), seats)
    return task


__all__ = ["autocast", "make_player", "make_task"]
