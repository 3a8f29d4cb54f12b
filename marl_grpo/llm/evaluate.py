"""Evaluation of the LLM agent on fixed held-out prompts, against the baselines of the same prompts."""

from __future__ import annotations

from typing import Any

import torch

from marl_grpo.agents.llm_text import TextFormat
from marl_grpo.llm.build import autocast, make_task
from marl_grpo.llm.config import LLMConfig
from marl_grpo.llm.tasks import PromptBatch
from marl_grpo.run.files import EVAL_SEED

EVAL_CHUNK = 8
"""held-out prompts are drawn this many at a time, spread over a whole match"""


def make_eval_set(cfg: LLMConfig, device: torch.device) -> tuple[Any, PromptBatch, torch.Tensor]:
    """The fixed held-out prompts and their answer table `[P, A]` (P = `eval_prompts`): `eval_prompts` states from
    matches with their own seed, drawn `EVAL_CHUNK` at a time at times spread over a whole
    match (prompts drawn at one moment, e.g. all near a kickoff, would be too alike)."""
    chunk = min(EVAL_CHUNK, cfg.eval_prompts)
    chunks = -(-cfg.eval_prompts // chunk)
    task = make_task(cfg, chunk, 0, cfg.seed + EVAL_SEED, device, stride=max(1, cfg.max_cycles // chunks))
    empty = torch.zeros(chunk, 0, dtype=torch.long, device=device)
    batches, tables = [], []
    for _ in range(chunks):
        batches.append(task.draw())
        tables.append(task.score(batches[-1], empty, empty.bool())[1].cpu())
    truth = None if batches[0].truth is None else torch.cat([b.truth for b in batches])
    keep = cfg.eval_prompts
    batch = PromptBatch([p for b in batches for p in b.prompts][:keep], torch.cat([b.slots for b in batches])[:keep],
                        torch.cat([b.players for b in batches])[:keep], None if truth is None else truth[:keep])
    return task, batch, torch.cat(tables)[:keep]


@torch.no_grad()
def evaluate_llm(agent, cfg: LLMConfig, batch: PromptBatch, table: torch.Tensor, answers: tuple[str, ...],
                 generator: torch.Generator) -> dict[str, float]:
    """Greedy and sampled answers to the fixed held-out prompts, scored with their answer table
    (a malformed answer scores 0): `eval/reward_*`, `eval/invalid_frac_*`, and the baselines: the
    reward of a uniformly random valid answer (`eval/reward_chance`), of the best single answer
    given to every prompt (`eval/reward_best_constant`) and of the best answer (`eval/reward_oracle`).
    Prompts are formatted and answers parsed as in training (`TextFormat.from_config`: chat
    template, system prompt, answer format); `eval/completion_len_*` is the mean completion length
    in tokens (EOS included)."""
    text_format = TextFormat.from_config(cfg, answers)
    out = {"eval/reward_chance": float(table.mean(1).mean()), "eval/reward_oracle": float(table.max(1).values.mean()),
           "eval/reward_best_constant": float(table.mean(0).max())}
    for mode in ("greedy", "sampled"):
        with autocast(cfg, agent.device):
            done = agent.generate(batch.prompts, 1, temperature=cfg.temperature, top_p=cfg.top_p,
                                  max_new_tokens=cfg.max_new_tokens, greedy=mode == "greedy", generator=generator,
                                  text_format=text_format)
        index, valid = text_format.parse(done.texts)
        scores = torch.where(valid, table.gather(1, index[:, None])[:, 0], torch.zeros(len(index)))
        out[f"eval/reward_{mode}"] = float(scores.mean())
        out[f"eval/invalid_frac_{mode}"] = float((~valid).float().mean())
        out[f"eval/completion_len_{mode}"] = float(done.lengths.float().mean())
    return out
