"""`LLMAgent`: a Hugging Face causal language model that plays soccer through text.

Importing this module imports `transformers` (the optional extra ``pip install -e .[llm]``);
`import marl_grpo.agents` alone does not.

    agent = LLMAgent.from_pretrained("path/to/model")          # local files only, never the hub
    agent = LLMAgent.tiny(seed=0)                             # or a tiny Llama-style model built from a config
    batch = agent.generate(prompts, num_samples=8, temperature=1.0, top_p=1.0, max_new_tokens=4)
    logp = agent.completion_logps(batch)                      # [S, T] with grad, for the loss

The prompt and answer formats live in `marl_grpo.agents.llm_text`. The tiny model and its
word-level tokenizer are built in-process: `build_tiny_tokenizer` takes its vocabulary from the
prompt renderer (`llm_text.vocabulary()`), so every word a prompt can hold is one token and every
action word a single token; `build_tiny_model` makes a Llama-style model of a few hundred
thousand parameters.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from marl_grpo.envs.backend import resolve_device
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from .llm_text import vocabulary

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


# --------------------------------------------------------------------------- tiny model


def build_tiny_tokenizer(words: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Word-level tokenizer (`tokenizers` WordLevel on white space, wrapped in
    `PreTrainedTokenizerFast`): ids 0-3 are ``<pad> <bos> <eos> <unk>``, then one id per word of
    `words` (default: every word the prompt renderer can emit, `llm_text.vocabulary()`).
    Encoding prepends ``<bos>``; prompts are padded on the left, as generation needs."""
    words = vocabulary() if words is None else list(words)
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token=UNK, padding_side="left")


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, hidden_size: int = 64, num_layers: int = 4,
                     num_heads: int = 4, intermediate_size: int = 192, seed: int = 0) -> PreTrainedModel:
    """A Llama-style causal LM built from a config (no download), sized for CPU tests and training.

    The defaults give about 220k parameters with the renderer's vocabulary (tied input and
    output embeddings). `seed` fixes the initialisation. (Llama rather than Qwen2: transformers 5
    reloads the tokenizer saved next to a ``qwen2`` config as Qwen's byte-level BPE, not as the
    word-level tokenizer it is.)
    """
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=256, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    return model


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Silence transformers' per-file tqdm bars while saving or loading a checkpoint."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


# --------------------------------------------------------------------------- KV cache, across transformers versions


def _cache_keyword(model: PreTrainedModel) -> str:
    """The keyword `model.forward` takes its KV cache under: ``cache`` from transformers 5.24 on (which
    deprecates ``past_key_values``, to be removed in 5.40), ``past_key_values`` before it. Read from
    the signature rather than the version, so that the cache never falls silently into ``**kwargs``
    of a forward that does not know the name; a wrapper whose signature shows neither name gets
    ``past_key_values``, which every version up to 5.40 accepts."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _output_cache(out: Any) -> Any:
    """The KV cache a forward pass returned: ``out.cache`` from transformers 5.24 on (reading
    ``out.past_key_values`` there warns), ``out.past_key_values`` before it."""
    cache = getattr(out, "cache", None)
    return out.past_key_values if cache is None else cache


# --------------------------------------------------------------------------- generation batch


@dataclass
class Completions:
    """Prompts and their sampled completions; S = prompts x samples (the G samples of one prompt
    are contiguous), W = prompt width (left-padded), T = completion width (right-padded)."""

    prompt_ids: torch.Tensor  # [S, W] int64
    prompt_mask: torch.Tensor  # [S, W] int64, 1 = real token
    completion_ids: torch.Tensor  # [S, T] int64, pad after the first EOS
    completion_mask: torch.Tensor  # [S, T] float, 1 up to and including the first EOS
    texts: list[str]  # [S] each completion decoded up to (not including) its first EOS
    group_size: int = 1  # G: rows [g * G, (g + 1) * G) share one prompt

    def __len__(self) -> int:
        return self.completion_ids.shape[0]

    def group_rows(self, groups: torch.Tensor) -> torch.Tensor:
        """[m * G] row indices of the prompt groups `groups` ([m] int64)."""
        G = self.group_size
        return (groups[:, None] * G + torch.arange(G, device=groups.device)).reshape(-1)

    def select(self, rows: torch.Tensor) -> Completions:
        """The completions `rows` ([m * G] int64, whole prompt groups as `group_rows` gives them),
        keeping the group layout."""
        return Completions(self.prompt_ids[rows], self.prompt_mask[rows], self.completion_ids[rows],
                           self.completion_mask[rows], [self.texts[i] for i in rows.tolist()], self.group_size)

    @property
    def lengths(self) -> torch.Tensor:
        """[S] completion length in tokens (the EOS counts)."""
        return self.completion_mask.sum(-1)


def eos_mask(completion_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """[S, T] float mask: 1 up to and including the first EOS of each row, 0 after it; a row
    without EOS (cut at `max_new_tokens`) is all ones. As TRL's `GRPOTrainer` builds
    `completion_mask` (``is_eos``, ``eos_idx``, ``sequence_indices <= eos_idx``)."""
    is_eos = completion_ids == eos_token_id
    width = completion_ids.shape[1]
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(is_eos[:, 0], width, dtype=torch.long))
    return (torch.arange(width, device=completion_ids.device)[None] <= first[:, None]).float()


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al. 2020): keep the smallest set of tokens whose
    probability reaches `top_p`, always at least the most likely one."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop = probs.cumsum(-1) - probs > top_p
    return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


# --------------------------------------------------------------------------- the agent


class LLMAgent:
    """A causal LM and its tokenizer, acting on text prompts.

    Args:
        model: a `transformers` causal LM.
        tokenizer: its tokenizer (a pad token is set to EOS when missing; prompts pad left).
        device: where the model runs ("auto" = CUDA when available); the model is moved there.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: Any, device: Any = "auto"):
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos token: the answer format needs one")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: Any = "auto",
                        dtype: torch.dtype | None = None) -> LLMAgent:
        """Load a model and tokenizer saved with `save_pretrained` from a local folder (never the hub)."""
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"--model {str(path)!r} does not hold a Hugging Face causal LM: expected a local folder with "
                "config.json, the weights and the tokenizer files (as written by save_pretrained, e.g. "
                "runs/<name>/checkpoint); nothing is downloaded"
            )
        try:
            with _no_progress_bars():
                tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=dtype)
        except (OSError, ValueError) as err:
            raise FileNotFoundError(
                f"--model {str(path)!r} could not be loaded as a causal LM with its tokenizer: {err}") from err
        return cls(model, tokenizer, device)

    @classmethod
    def tiny(cls, seed: int = 0, device: Any = "auto", **sizes: int) -> LLMAgent:
        """A fresh tiny Llama-style model with the word-level tokenizer (`build_tiny_model` sizes as keywords)."""
        tokenizer = build_tiny_tokenizer()
        return cls(build_tiny_model(tokenizer, seed=seed, **sizes), tokenizer, device)

    def save(self, path: str | os.PathLike) -> None:
        """`save_pretrained` of the model and the tokenizer: loads back with `from_pretrained`."""
        with _no_progress_bars():
            self.model.save_pretrained(str(path))
            self.tokenizer.save_pretrained(str(path))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def eos_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, prompts: list[str], num_samples: int = 1, temperature: float = 1.0, top_p: float = 1.0,
                 max_new_tokens: int = 4, greedy: bool = False,
                 generator: torch.Generator | None = None) -> Completions:
        """`num_samples` completions of every prompt, sampled in one batch with a KV cache.

        Each prompt is encoded once and its cache is repeated `num_samples` times. Sampling is
        from ``softmax(logits / temperature)`` restricted to the top-p nucleus (`greedy` takes
        the argmax); a row stops at its first EOS (then gets pad tokens) or at
        `max_new_tokens`. `generator` (on the model's device) makes the draws reproducible.
        """
        if not prompts:
            raise ValueError("generate needs at least one prompt")
        model, tok, device = self.model, self.tokenizer, self.device
        was_training = model.training
        model.eval()
        enc = tok(list(prompts), return_tensors="pt", padding=True)
        prompt_ids, prompt_mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions, use_cache=True,
                    logits_to_keep=1)
        cache, cache_kw = _output_cache(out), _cache_keyword(model)
        if num_samples > 1:
            cache.batch_repeat_interleave(num_samples)
        logits = out.logits[:, -1].float().repeat_interleave(num_samples, 0)
        prompt_ids = prompt_ids.repeat_interleave(num_samples, 0)
        prompt_mask = prompt_mask.repeat_interleave(num_samples, 0)
        next_pos = positions[:, -1:].repeat_interleave(num_samples, 0) + 1
        rows = prompt_ids.shape[0]
        finished = torch.zeros(rows, dtype=torch.bool, device=device)
        mask = prompt_mask
        tokens = []
        for step in range(max_new_tokens):
            scaled = torch.log_softmax(logits / temperature, -1)
            if greedy:
                token = scaled.argmax(-1)
            else:
                probs = _top_p_filter(scaled, top_p).softmax(-1)
                token = torch.multinomial(probs, 1, generator=generator)[:, 0]
            token = torch.where(finished, torch.full_like(token, tok.pad_token_id), token)
            tokens.append(token)
            finished = finished | (token == self.eos_token_id)
            if bool(finished.all()) or step + 1 == max_new_tokens:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            out = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_pos,
                        use_cache=True, **{cache_kw: cache})
            cache, logits, next_pos = _output_cache(out), out.logits[:, -1].float(), next_pos + 1
        model.train(was_training)
        completion_ids = torch.stack(tokens, 1)
        completion_mask = eos_mask(completion_ids, self.eos_token_id)
        return Completions(prompt_ids, prompt_mask, completion_ids, completion_mask, self.decode(completion_ids),
                           num_samples)

    def decode(self, completion_ids: torch.Tensor) -> list[str]:
        """Each row up to (not including) its first EOS, special tokens kept (so a stray pad or
        bos makes the answer malformed instead of vanishing)."""
        texts = []
        for row in completion_ids.tolist():
            if self.eos_token_id in row:
                row = row[: row.index(self.eos_token_id)]
            texts.append(self.tokenizer.decode(row, skip_special_tokens=False))
        return texts

    # ------------------------------------------------------------------ log-probs
    def completion_logps(self, batch: Completions, model: PreTrainedModel | None = None,
                         temperature: float = 1.0, share_prompt: bool = True,
                         with_entropy: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probs `[S, T]` of the completion tokens under `model` (default: this
        agent's) by a forward pass; positions after the first EOS are 0 (mask them with
        `batch.completion_mask`). Gradients flow when called outside `torch.no_grad()`.
        `with_entropy` also returns the entropy `[S, T]` of each position's next-token distribution.

        As TRL's ``GRPOTrainer._get_per_token_logps``: logits are divided by the sampling
        temperature, only the positions that predict completion tokens are projected to the
        vocabulary (``logits_to_keep``), and the log-prob is gathered after a log-softmax in
        float32. With `share_prompt` (and G > 1) each prompt runs once and its KV cache is
        repeated for its G completions (a differentiable `repeat_interleave`), which gives the
        same values and gradients as G full passes at about 1/G of the prompt cost.
        """
        model = self.model if model is None else model
        G, width = batch.group_size, batch.completion_ids.shape[1]
        if not share_prompt or G == 1:
            ids = torch.cat([batch.prompt_ids, batch.completion_ids], 1)
            mask = torch.cat([batch.prompt_mask, batch.completion_mask.long()], 1)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                           logits_to_keep=width + 1).logits[:, :-1]
        else:
            prompt_mask = batch.prompt_mask[::G]
            positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=batch.prompt_ids[::G], attention_mask=prompt_mask, position_ids=positions,
                        use_cache=True, logits_to_keep=1)
            logits = out.logits[:, -1:].repeat_interleave(G, 0)  # [S, 1, V]: predicts completion token 0
            if width > 1:
                cache = _output_cache(out)
                cache.batch_repeat_interleave(G)
                mask = torch.cat([batch.prompt_mask, batch.completion_mask[:, :-1].long()], 1)
                steps = torch.arange(1, width, device=positions.device)
                rest = model(input_ids=batch.completion_ids[:, :-1], attention_mask=mask,
                             position_ids=positions[:, -1:].repeat_interleave(G, 0) + steps, use_cache=True,
                             **{_cache_keyword(model): cache}).logits
                logits = torch.cat([logits, rest], 1)
        log_probs = torch.log_softmax(logits.float() / temperature, -1)  # [S, T, V]
        logp = log_probs.gather(-1, batch.completion_ids[..., None])[..., 0] * batch.completion_mask
        if not with_entropy:
            return logp
        entropy = -(log_probs.exp() * log_probs).sum(-1) * batch.completion_mask
        return logp, entropy


__all__ = [
    "SPECIAL_TOKENS",
    "Completions",
    "LLMAgent",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "eos_mask",
]
