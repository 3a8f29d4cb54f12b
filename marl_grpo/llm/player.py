"""An LLM checkpoint as a soccer player: loading it, and naming the seats it plays.

    player = load_llm_player("runs/llm-tiny/checkpoint", device, env_config, decide_every=4)
    seats = parse_players("all-blue", env_config)            # -> [0, 1] in a 2v2 match

An LLM checkpoint is a folder written by `LLMTrainer.write_checkpoint`: the model's Hugging Face
files and the run's `llm_config.json`. Its run config says how the model was asked and how its
answers were read (`text_format`), how long it held an answer (`horizon`, the default
`decide_every`) and the matches it trained on (team size, match length), so that it plays here
as it trained (`TextFormat.from_config`: chat template, system prompt, answer format; and its
temperature, top-p and max_new_tokens). Loading the model goes through `marl_grpo.llm.train.load_agent`, the trainer's
own loader, so that whatever checkpoint the trainer writes, a player can load.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from marl_grpo.agents.llm_player import LLMPlayer
from marl_grpo.envs import SoccerConfig
from marl_grpo.llm.build import make_player
from marl_grpo.llm.config import LLMConfig
from marl_grpo.llm.tasks import llm_player_indices
from marl_grpo.run.checkpoint import recover
from marl_grpo.run.files import LLM_CONFIG_FILE


def is_llm_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder holding an LLM run's checkpoint (its `llm_config.json`). As
    `read_config` does for soccer checkpoints, a checkpoint left half-renamed by a crash while
    saving is put back in place first (`recover`)."""
    recover(path)
    return (Path(path) / LLM_CONFIG_FILE).is_file()


def read_llm_config(path: str | os.PathLike) -> LLMConfig:
    """The run config saved in an LLM checkpoint. Fields the current `LLMConfig` lacks are dropped
    and new ones take their defaults, so older checkpoints stay playable."""
    from marl_grpo.llm.train import LLMTrainer

    if not is_llm_checkpoint(path):
        raise FileNotFoundError(f"no LLM checkpoint at {str(path)!r}: expected a folder holding {LLM_CONFIG_FILE} "
                                "and the model's Hugging Face files (runs/<name>/checkpoint of `marl-grpo llm`)")
    saved = LLMTrainer.saved_config(Path(path))
    names = {f.name for f in dataclasses.fields(LLMConfig)}
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in names}
    return LLMConfig(**settings, given=frozenset())  # checked when its run started: no field counts as given


def llm_env_kwargs(cfg: LLMConfig) -> dict[str, Any]:
    """`SoccerVecEnv` keywords of the matches an LLM run trained on (team size, match length)."""
    return {"team_size": cfg.team_size, "max_cycles": cfg.max_cycles}


def load_llm_player(path: str | os.PathLike, device: torch.device, env_config: SoccerConfig,
                    decide_every: int | None = None, greedy: bool = False, seed: int = 0) -> LLMPlayer:
    """An `LLMPlayer` of the checkpoint at `path` for matches of `env_config` (`make_player`).

    `decide_every` defaults to the run's `horizon` (the steps it held each answer in training);
    `greedy` takes the most likely answer, else answers are sampled at the run's temperature
    and top-p from a stream seeded by `seed`.
    """
    from marl_grpo.llm.train import load_agent

    cfg = read_llm_config(path)
    if cfg.task != "soccer":
        raise ValueError(f"the LLM checkpoint {str(path)!r} was trained on the {cfg.task!r} task, which does not "
                         "answer actions: only a --task soccer run plays matches")
    return make_player(cfg, load_agent(cfg, device, Path(path)), env_config, decide_every, greedy, seed)


def parse_players(spec: str, config: SoccerConfig) -> list[int]:
    """Blue player columns [K] (indices into `config.agents`) of an `--llm-players` spec:
    ``blue_0``, ``blue_0,blue_1`` or ``all-blue`` (read as the trainer reads it, `llm_player_indices`);
    the line-ups of `eval` and `watch` give the LLM blue seats only."""
    try:
        seats = llm_player_indices(spec, config)
    except ValueError:
        seats = None
    blue = [a for a in config.agents if a.startswith("blue_")]
    if not seats or any(i >= config.n_blue for i in seats):
        raise ValueError(f"--llm-players {spec!r} is invalid here: expected all-blue or comma-separated blue players "
                         f"({', '.join(blue)}) of this {config.n_blue}v{config.n_red} match; the LLM plays blue, "
                         "and --opponent plays red")
    return list(seats)


__all__ = ["is_llm_checkpoint", "llm_env_kwargs", "load_llm_player", "make_player", "parse_players", "read_llm_config"]
