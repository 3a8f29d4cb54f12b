"""LLM-agent configuration: `RunConfig`'s shared fields plus the model, task and generation ones.

TRL `GRPOConfig` names where TRL has one. Field names shared with soccer training mean the same
(`update_epochs` is TRL's `num_iterations`, `opponent` the bot playing the other players).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marl_grpo.agents import BOT_NAMES
from marl_grpo.envs.config import MAX_TEAM_SIZE
from marl_grpo.llm.tasks import TASKS
from marl_grpo.run.config import RunConfig, check_choice, check_int, check_number
from marl_grpo.run.presets import pick_preset


@dataclass
class LLMConfig(RunConfig):
    """Hyperparameters of an LLM-agent GRPO run."""

    RESUMABLE = (*RunConfig.RESUMABLE, "total_iterations", "eval_prompts")

    name: str = "llm"
    learning_rate: float = 3e-3
    max_grad_norm: float = 1.0
    update_epochs: int = 1
    num_minibatches: int = 1
    ent_coef: float = 0.0
    ref_refresh: int = 0
    save_every: int = 50
    bf16: bool = False
    """run the model's forward passes in bfloat16 autocast (CUDA only; weights and optimiser stay float32)"""

    # ------------------------------------------------------------------ model
    model: str = ""
    """local folder of a Hugging Face causal LM and its tokenizer (never downloaded); empty = build the
    tiny Llama-style model and word-level tokenizer in-process, from scratch"""
    tiny_hidden: int = 64
    """hidden size of the tiny model (when `model` is empty)"""
    tiny_layers: int = 4
    """transformer layers of the tiny model"""
    tiny_heads: int = 4
    """attention heads of the tiny model"""
    tiny_intermediate: int = 192
    """MLP width of the tiny model"""
    weight_decay: float = 0.0
    """AdamW weight decay"""

    # ------------------------------------------------------------------ task
    task: str = "soccer"
    """soccer: answer an action, rewarded by its H-step return in a branched copy of the match;
    direction: say which compass direction the ball is (exact match, 0/1)"""
    team_size: int = 2
    """players per team of the matches prompts come from"""
    max_cycles: int = 300
    """match length in steps"""
    opponent: str = "team"
    """scripted bot playing every other player: random, chaser or team"""
    opponent_strength: float = 1.0
    """strength in [0, 1] of the bots (1 = deterministic play)"""
    others_checkpoint: str = ""
    """soccer policy checkpoint (runs/<name>/checkpoint) that plays the others instead of the bots"""
    stride: int = 8
    """steps the source matches advance between two prompt batches"""
    balance: bool = True
    """draw prompt states evenly over the direction of the ball from the player (weights 1 / frequency),
    so that no single answer is right for most prompts (in real play the ball is mostly east)"""
    horizon: int = 4
    """H: steps the LLM's player holds its action in each branch (soccer task)"""
    reward_goal: float = 1.0
    """weight of the goal component in the H-step return (soccer task)"""
    reward_ball_touch: float = 0.0
    """weight of the ball-touch component (touching alone is not worth anything here)"""
    reward_ball_progress: float = 1.0
    """weight of the ball-progress component (ball moved towards the goal by the last toucher)"""
    reward_shot_on_target: float = 0.2
    """weight of the shot-on-target component"""
    reward_dist_to_ball: float = 0.1
    """weight of the distance-to-ball component (makes running to the ball pay off far from it)"""
    format_penalty: float = 1.0
    """subtracted from the reward of a malformed answer (which plays stay)"""

    # ------------------------------------------------------------------ generation
    prompts_per_step: int = 16
    """P: prompts per iteration"""
    max_new_tokens: int = 4
    """longest completion; the answer is one word then EOS (with 1: just the word, the completion is cut after it)"""
    temperature: float = 1.0
    """sampling temperature (the log-probs are computed at the same temperature, as TRL)"""
    top_p: float = 1.0
    """nucleus sampling threshold in (0, 1]"""

    # ------------------------------------------------------------------ budget and evaluation
    total_iterations: int = 200
    """iterations (one prompt batch each)"""
    eval_prompts: int = 64
    """held-out prompts, drawn once from matches with their own seed"""

    def validate(self) -> None:
        super().validate()
        check_choice(self, "task", TASKS)
        check_choice(self, "opponent", BOT_NAMES)
        if self.group_size < 2:
            raise ValueError(f"group_size={self.group_size!r} is invalid: a GRPO group needs at least 2 completions")
        for name in ("prompts_per_step", "max_new_tokens", "total_iterations", "horizon", "eval_prompts", "stride",
                     "max_cycles", "tiny_hidden", "tiny_layers", "tiny_heads", "tiny_intermediate"):
            check_int(self, name)
        if self.prompts_per_step % self.num_minibatches:
            raise ValueError(
                f"num_minibatches={self.num_minibatches} must divide prompts_per_step={self.prompts_per_step}")
        check_int(self, "team_size", high=MAX_TEAM_SIZE)
        check_number(self, "temperature", low_open=True)
        check_number(self, "top_p", high=1.0, low_open=True)
        check_number(self, "opponent_strength", high=1.0)
        for name in ("format_penalty", "weight_decay"):
            check_number(self, name)
        for name in ("goal", "ball_touch", "ball_progress", "shot_on_target", "dist_to_ball"):
            check_number(self, f"reward_{name}", low=-float("inf"))

    def env_kwargs(self) -> dict[str, Any]:
        weights = {f"reward_{k}": getattr(self, f"reward_{k}")
                   for k in ("goal", "ball_touch", "ball_progress", "shot_on_target", "dist_to_ball")}
        return {"team_size": self.team_size, "max_cycles": self.max_cycles, **weights}


_TINY = {"learning_rate": 1e-3, "ent_coef": 0.15, "max_new_tokens": 1, "total_iterations": 2000, "max_minutes": 10.0}
"""from-scratch settings: one-token answers (the action word; EOS not required, the completion is cut
after it), an entropy bonus against collapsing onto one answer, and a high learning rate"""

PRESETS: dict[str, LLMConfig] = {
    # the tiny Llama-style model from scratch on CPU, soccer decisions (the README's example)
    "tiny": LLMConfig(name="llm-tiny", **_TINY),
    # the same model on the text-only verifiable task (exact match, 0/1)
    "tiny-direction": LLMConfig(name="llm-direction", task="direction", **_TINY),
    # the answer format "action word, then EOS" (max_new_tokens 4): slower and less reliable from scratch
    "tiny-eos": LLMConfig(name="llm-eos", **{**_TINY, "max_new_tokens": 4, "ent_coef": 0.05}),
    # GSPO (sequence-level ratio, Zheng et al. 2025) with DAPO's token-level loss and clip-higher, 2 epochs
    "tiny-gspo": LLMConfig(name="llm-gspo", ratio_level="sequence", loss_type="dapo", update_epochs=2,
                           clip_eps=3e-3, clip_eps_high=4e-3, **_TINY),
    # a pretrained local model on a GPU: pass --model PATH
    "gpu": LLMConfig(name="llm-gpu", device="cuda", bf16=True, prompts_per_step=32, group_size=8,
                     max_new_tokens=8, learning_rate=1e-6, kl_coef=0.04, top_p=0.95, total_iterations=300,
                     eval_every=25),
    # the smallest real run, for tests
    "test": LLMConfig(name="llm-test", tiny_hidden=16, tiny_layers=1, tiny_heads=2, tiny_intermediate=32,
                      prompts_per_step=2, group_size=2, max_new_tokens=2, total_iterations=2, eval_every=1,
                      eval_prompts=4, save_every=1, stride=2, threads=1, progress=False),
}


def preset(name: str) -> LLMConfig:
    return pick_preset(PRESETS, name)
