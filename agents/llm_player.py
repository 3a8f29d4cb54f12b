"""`LLMPlayer`: a language model playing soccer players in whole matches, closed loop.

Pure torch and the text interface (`llm_text`); the model comes in as an `LLMAgent`, so this
module imports no `transformers` itself.

    player = LLMPlayer(agent, env.config, decide_every=4, greedy=True)
    actions = player.act(obs[:, :1])        # obs [B, K, D] of the K players it controls -> int64 [B, K]

Every `decide_every` (H) calls it renders the B x K observations as prompts, makes ONE batched
generation call over all of them, parses the answers and holds those actions for the next H
steps, as the LLM trainer's soccer task holds its answer for `horizon` steps in every branch.
A malformed answer plays ``stay`` and is counted (`invalid_frac`).

How prompts are presented and answers read is a `TextFormat` (chat template, system prompt,
answer format), with the generation settings in `generate_kwargs`:
`marl_grpo.llm.player.load_llm_player` takes both from the checkpoint's own run config, so that
the model plays in the format it was trained in.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, ContextManager

import torch
from marl_grpo.envs.config import SoccerConfig

from .llm_text import ACTION_WORDS, TextFormat, render_soccer


class LLMPlayer:
    """Acts for K players of B matches from one batched generation per decision step.

    Args:
        agent: an `LLMAgent` (anything with its `generate(prompts, num_samples, ...)` and `device`).
        config: the env config of the matches (the prompt renderer reads its observation layout).
        decide_every: H, steps an answer is held; a decision is made at calls 0, H, 2H, ...
            after `reset`.
        greedy: take each answer's most likely tokens instead of sampling.
        text_format: how prompts are presented and completions parsed (default: plain prompts, the
            strict one-word answer); its answers must be `ACTION_WORDS`.
        generate_kwargs: the rest of `agent.generate`'s keywords (temperature, top_p, max_new_tokens).
        forward_context: a context manager factory wrapping each generation (autocast).
        seed: seeds the sampling stream (`reset` restarts it).
    """

    def __init__(self, agent: Any, config: SoccerConfig, decide_every: int = 1, greedy: bool = False,
                 text_format: TextFormat | None = None, generate_kwargs: dict[str, Any] | None = None,
                 forward_context: Callable[[], ContextManager] | None = None, seed: int = 0):
        if isinstance(decide_every, bool) or not isinstance(decide_every, int) or decide_every < 1:
            raise ValueError(f"decide_every={decide_every!r} is invalid: expected an int >= 1 (steps an answer is held)")
        self.agent, self.config, self.decide_every, self.greedy = agent, config, decide_every, greedy
        self.text_format = TextFormat() if text_format is None else text_format
        if tuple(self.text_format.answers) != ACTION_WORDS:
            raise ValueError(f"a player answers actions: text_format.answers must be {ACTION_WORDS}, got "
                             f"{self.text_format.answers}")
        self.generate_kwargs = dict(generate_kwargs or {})
        self.forward_context = forward_context or contextlib.nullcontext
        self.seed = seed
        self.generator = torch.Generator(device=agent.device)
        self.reset()
        self.decisions = 0
        """answers given since construction (one per player per decision step)"""
        self.invalid = 0
        """malformed answers among them (each played stay)"""
        self.generate_calls = 0
        """batched generation calls (one per decision step)"""
        self.seconds = 0.0
        """time spent deciding: rendering, generation and parsing"""
        self.last_texts: list[str] = []
        """the completions of the last decision step, [B * K] row-major"""

    def reset(self) -> None:
        """Start a new match: the next call decides, and the sampling stream restarts from the seed."""
        self.step = 0
        self.held: torch.Tensor | None = None
        self.generator.manual_seed(self.seed)

    @property
    def invalid_frac(self) -> float:
        """Share of malformed answers over every decision so far (0 before the first)."""
        return self.invalid / self.decisions if self.decisions else 0.0

    @property
    def decisions_per_s(self) -> float:
        """Answers per second of deciding time (rendering + generation + parsing)."""
        return self.decisions / self.seconds if self.seconds > 0 else 0.0

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions int64 [B, K] of the controlled players from their observations [B, K, D].

        Decides on the first call after `reset` and every `decide_every` calls after it, else
        returns the held actions. The shape must stay the same between decisions.
        """
        if obs.ndim != 3:
            raise ValueError(f"obs must be [B, K, D] (matches, controlled players, features), got {list(obs.shape)}")
        if self.step % self.decide_every == 0 or self.held is None or self.held.shape != obs.shape[:2]:
            self.held = self.decide(obs)
        self.step += 1
        return self.held.to(obs.device)

    def decide(self, obs: torch.Tensor) -> torch.Tensor:
        """One decision for every (match, player): one `agent.generate` call over all B x K prompts."""
        start = time.perf_counter()
        B, K = obs.shape[:2]
        prompts = render_soccer(obs, self.config)
        with self.forward_context():
            done = self.agent.generate(prompts, 1, greedy=self.greedy, generator=self.generator,
                                       text_format=self.text_format, **self.generate_kwargs)
        index, valid = self.text_format.parse(done.texts)
        actions = torch.where(valid, index, torch.zeros_like(index)).view(B, K)
        self.last_texts = list(done.texts)
        self.generate_calls += 1
        self.decisions += B * K
        self.invalid += int((~valid).sum())
        self.seconds += time.perf_counter() - start
        return actions


__all__ = ["LLMPlayer"]
