"""`LLMAgent`: a Hugging Face causal language model that plays soccer through text.

Importing this module imports `transformers` (the optional extra ``pip install -e .[llm]``);
`import marl_grpo.agents` alone does not.

    agent = LLMAgent.from_pretrained("path/to/model")          # local files only, never the hub
    agent = LLMAgent.tiny(seed=0)                             # or a tiny Llama-style model built from a config
    batch = agent.generate(prompts, num_samples=8, temperature=1.0, top_p=1.0, max_new_tokens=4)
    logp = agent.completion_logps(batch)                      # [S, T] with grad, for the loss

    fmt = TextFormat(ACTION_WORDS, answer_format="choice", chat_template="auto")   # an instruct model
    batch = agent.generate(prompts, 8, max_new_tokens=4, text_format=fmt)          # chat template, masked words
    index, valid = fmt.parse(batch.texts)                                          # [S] actions, [S] all valid

The prompt and answer formats live in `marl_grpo.agents.llm_text`; `TextFormat` says how a
prompt is shown (plain, or the user message of the tokenizer's chat template under a system
prompt) and how the answer is read. Generation stops on every EOS id (`eos_token_ids`). The
``choice`` format decodes under `ChoiceConstraint`, and `completion_logps` scores its batches
under the same mask, in chunks of completion positions (`chunk_size`). The tiny model and its
word-level tokenizer are built in-process: `build_tiny_tokenizer` takes its vocabulary from the
prompt renderer (`llm_text.vocabulary()`), so every word a prompt can hold is one token and every
action word a single token; `build_tiny_model` makes a Llama-style model of a few hundred
thousand parameters.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.utils.checkpoint
from marl_grpo.envs.backend import resolve_device
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from .llm_text import TextFormat, vocabulary

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


ADAPTER_CONFIG = "adapter_config.json"
"""peft's adapter config file: a folder holding it (and no config.json) is a LoRA checkpoint"""


def _import_peft(what: str) -> Any:
    try:
        import peft
    except ImportError:
        raise ValueError(f"{what} needs peft: pip install -e '.[llm]'") from None
    return peft


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
    of a forward that does not know the name. A peft model passes its keywords on to the model it
    wraps, so that model's signature decides; any other wrapper whose signature shows neither name
    gets ``past_key_values``, which every version up to 5.40 accepts."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


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
    constraint: ChoiceConstraint | None = None  # the token mask of constrained decoding (answer format choice)

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
                           self.completion_mask[rows], [self.texts[i] for i in rows.tolist()], self.group_size,
                           self.constraint)

    @property
    def lengths(self) -> torch.Tensor:
        """[S] completion length in tokens (the EOS counts)."""
        return self.completion_mask.sum(-1)


def eos_mask(completion_ids: torch.Tensor, eos_token_id: int | Collection[int]) -> torch.Tensor:
    """[S, T] float mask: 1 up to and including the first EOS of each row (any id of
    `eos_token_id`, one id or a set), 0 after it; a row without EOS (cut at `max_new_tokens`) is
    all ones. As TRL's `GRPOTrainer` builds `completion_mask` (``is_eos``, ``eos_idx``,
    ``sequence_indices <= eos_idx``)."""
    ids = [eos_token_id] if isinstance(eos_token_id, int) else sorted(eos_token_id)
    is_eos = torch.isin(completion_ids, torch.tensor(ids, dtype=completion_ids.dtype, device=completion_ids.device))
    width = completion_ids.shape[1]
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(is_eos[:, 0], width, dtype=torch.long))
    return (torch.arange(width, device=completion_ids.device)[None] <= first[:, None]).float()


UNCONSTRAINED = -1
"""the trie state of a position that no mask restricts: after an EOS (masked out of the loss
anyway), or a token off the trie in a batch that was not generated under the constraint"""


@dataclass(frozen=True, eq=False)
class ChoiceConstraint:
    """Constrained decoding to a list of answer words: a token trie over the tokenizer's
    encodings of each word, which masks the logits of every generated token.

    As guided generation (Willard & Louf 2023, "Efficient Guided Generation for Large Language
    Models", the Outlines library): a state machine over tokens says which tokens may come next,
    and every other logit is set to -inf before sampling, so every completion is an allowed word.
    Here the machine is a trie of whole-word token sequences (each word encoded as is and with a
    leading space, the two forms a tokenizer produces after a prompt or a chat template's
    assistant prefix), not a regex over characters. Unlike TRL, whose structured outputs mask
    only at generation time (vLLM guided decoding) and then score the completion under the full
    softmax, `LLMAgent.completion_logps` applies the same mask, so the log-probs of the loss, the
    importance ratio and the entropy are all over the distribution that was sampled.

    At a node the allowed tokens are the children that can still reach the end of a word within
    the tokens left (`max_new_tokens` minus the step), plus every EOS id when a word ends at the
    node; after a complete word with no longer continuation only EOS is allowed, and a completion
    cut at `max_new_tokens` right after a word is valid.

    Attributes:
        children: per node, ``{token id: child node}``; node 0 is the root.
        word: per node, the index in `words` of the word that ends there, or None.
        to_end: per node, the fewest tokens from it to the end of a word.
        eos_token_ids: the ids that end a completion.
        max_new_tokens: the completion budget the mask is computed for.
    """

    words: tuple[str, ...]
    children: tuple[dict[int, int], ...]
    word: tuple[int | None, ...]
    to_end: tuple[int, ...]
    eos_token_ids: tuple[int, ...]
    max_new_tokens: int
    _tables: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, tokenizer: Any, words: Sequence[str], eos_token_ids: Collection[int],
              max_new_tokens: int) -> ChoiceConstraint:
        """The trie of `words` under `tokenizer`. An encoding is kept when it holds no special or
        unknown token and decodes back to the word; a word with none, or a budget too small for
        every word, raises a `ValueError`."""
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        children: list[dict[int, int]] = [{}]
        word: list[int | None] = [None]
        for index, w in enumerate(words):
            kept = 0
            for text in (w, " " + w):
                ids = tokenizer.encode(text, add_special_tokens=False)
                if not ids or special & set(ids) or tokenizer.decode(ids).strip() != w:
                    continue
                node = 0
                for token in ids:
                    if token not in children[node]:
                        children[node][token] = len(children)
                        children.append({})
                        word.append(None)
                    node = children[node][token]
                word[node] = index
                kept += 1
            if not kept:
                raise ValueError(f"answer_format='choice': the answer word {w!r} has no encoding of ordinary tokens "
                                 "with this tokenizer, so constrained decoding cannot produce it")
        to_end = [0] * len(children)
        for node in reversed(range(len(children))):  # children always have larger ids than their parent
            ends = [to_end[c] + 1 for c in children[node].values()]
            to_end[node] = 0 if word[node] is not None else min(ends)
        if to_end[0] > max_new_tokens:
            raise ValueError(f"max_new_tokens={max_new_tokens} is too small for answer_format='choice': the shortest "
                             f"answer word takes {to_end[0]} tokens with this tokenizer")
        return cls(tuple(words), tuple(children), tuple(word), tuple(to_end), tuple(sorted(eos_token_ids)),
                   max_new_tokens)

    @functools.cached_property
    def depth(self) -> int:
        """Tokens of the longest word encoding: a budget beyond it allows the same tokens."""
        deepest = [0] * len(self.children)
        for node in range(len(self.children)):
            for child in self.children[node].values():
                deepest[child] = deepest[node] + 1
        return max(deepest)

    def allowed_ids(self, node: int, step: int) -> list[int] | None:
        """The token ids allowed at trie `node` for generated token number `step` (0-based);
        None = any token (`UNCONSTRAINED`)."""
        if node == UNCONSTRAINED:
            return None
        left = self.max_new_tokens - step
        ids = [token for token, child in self.children[node].items() if 1 + self.to_end[child] <= left]
        return ids + list(self.eos_token_ids) if self.word[node] is not None else ids

    def advance(self, node: int, token: int) -> int:
        """The node after `token`: `UNCONSTRAINED` after an EOS or off the trie."""
        if node == UNCONSTRAINED or token in self.eos_token_ids:
            return UNCONSTRAINED
        return self.children[node].get(token, UNCONSTRAINED)

    def _edges(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The trie as tensors on `device`: (parent [E], token [E], child [E], eos ids)."""
        key = ("edges", str(device))
        if key not in self._tables:
            edges = [(node, token, child) for node, kids in enumerate(self.children) for token, child in kids.items()]
            parent, token, child = torch.tensor(edges, dtype=torch.long, device=device).reshape(-1, 3).unbind(1)
            self._tables[key] = (parent, token, child, torch.tensor(self.eos_token_ids, device=device))
        return self._tables[key]

    def advance_batch(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """`advance` of every row at once: nodes [R] and tokens [R] int64 -> nodes [R], one tensor
        comparison against the trie's E edges (no host sync)."""
        parent, token, child, eos = self._edges(nodes.device)
        hit = (nodes[:, None] == parent) & (tokens[:, None] == token)  # [R, E]: at most one edge per row
        nxt = torch.where(hit.any(1), child[hit.int().argmax(1)], UNCONSTRAINED)
        return torch.where((nodes == UNCONSTRAINED) | torch.isin(tokens, eos), UNCONSTRAINED, nxt)

    def table(self, vocab_size: int, device: torch.device) -> torch.Tensor:
        """bool `[N + 1, D + 1, V]`: the allowed tokens at node n with min(tokens left, D)
        tokens left (D = `depth`); the last node row (index -1, `UNCONSTRAINED`) allows all."""
        key = (vocab_size, str(device))
        if key not in self._tables:
            depth = self.depth
            table = torch.zeros(len(self.children) + 1, depth + 1, vocab_size, dtype=torch.bool)
            table[-1] = True
            for node in range(len(self.children)):
                for left in range(1, depth + 1):
                    table[node, left, self.allowed_ids(node, self.max_new_tokens - left)] = True
            self._tables[key] = table.to(device)
        return self._tables[key]

    def masks(self, nodes: torch.Tensor, steps: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """bool `[..., V]` allowed tokens at trie `nodes` `[...]` (`UNCONSTRAINED` = all) for
        generated token numbers `steps` `[...]`."""
        left = (self.max_new_tokens - steps).clamp(0, self.depth)
        return self.table(vocab_size, nodes.device)[nodes, left]

    def walk(self, completion_ids: torch.Tensor) -> torch.Tensor:
        """int64 `[S, T]`: the trie node before each completion token (`UNCONSTRAINED` after an
        EOS or off the trie)."""
        node = torch.zeros(completion_ids.shape[0], dtype=torch.long, device=completion_ids.device)
        nodes = []
        for column in completion_ids.unbind(1):
            nodes.append(node)
            node = self.advance_batch(node, column)
        return torch.stack(nodes, 1) if nodes else torch.zeros_like(completion_ids)


def _masked_log_softmax(logits: torch.Tensor, allowed: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-softmax over the `allowed` tokens only (bool, same shape; None = all), and the
    entropy of that distribution; disallowed tokens get -inf log-prob and no entropy term."""
    if allowed is None:
        log_probs = torch.log_softmax(logits, -1)
        return log_probs, -(log_probs.exp() * log_probs).sum(-1)
    log_probs = torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), -1)
    return log_probs, -(log_probs.exp() * log_probs.masked_fill(~allowed, 0.0)).sum(-1)


def _output_head(model: PreTrainedModel) -> tuple[Any, Any] | None:
    """`(decoder, head)` when the model's logits are exactly ``head(decoder(...).last_hidden_state)``
    (Llama, Qwen, Mistral, SmolLM and most causal LMs in transformers, also under peft, whose
    wrappers forward both getters to the base model); None for a model that post-processes its
    logits (soft-capping, logit scales) or does not expose the two parts."""
    config = getattr(model, "config", None)
    for name in ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale"):
        if getattr(config, name, None) not in (None, 1, 1.0):
            return None
    try:
        decoder, head = model.get_decoder(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if decoder is None or head is None or decoder is model:
        return None
    return decoder, head


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
    def from_pretrained(cls, path: str | os.PathLike, device: Any = "auto", dtype: torch.dtype = torch.float32,
                        base: str | os.PathLike | PreTrainedModel | None = None,
                        trainable: bool = False) -> LLMAgent:
        """Load a model and tokenizer saved with `save_pretrained` from a local folder (never the hub).

        The weights load as `dtype`, float32 by default whatever the folder's config.json says
        (its ``dtype``, e.g. bfloat16, is only how the file stores them): training keeps float32
        master weights and sets the forward's precision with autocast.

        A LoRA checkpoint (peft's ``adapter_config.json`` + ``adapter_model.safetensors``, as
        `save` writes for a `add_lora` model) is attached to its base model: `base` (a folder or a
        model), else the folder its adapter config names. `trainable` keeps the adapter's
        weights trainable (resume), else they are frozen (play).
        """
        folder = Path(path)
        if (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file():
            return cls._from_adapter(folder, device, dtype, base, trainable)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"--model {str(path)!r} does not hold a Hugging Face causal LM: expected a local folder with "
                "config.json, the weights and the tokenizer files (as written by save_pretrained, e.g. "
                "runs/<name>/checkpoint), or a LoRA adapter (adapter_config.json); nothing is downloaded"
            )
        tokenizer_files = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")
        if not any((folder / name).is_file() for name in tokenizer_files):
            raise FileNotFoundError(
                f"--model {str(path)!r} has no tokenizer: none of {', '.join(tokenizer_files)} is in the folder; "
                "save the model's tokenizer next to it (tokenizer.save_pretrained(folder)), as training "
                "checkpoints and `marl-grpo fetch-model` do")
        try:
            with _no_progress_bars():
                tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=dtype)
        except (OSError, ValueError) as err:
            raise FileNotFoundError(
                f"--model {str(path)!r} could not be loaded as a causal LM with its tokenizer: {err}") from err
        return cls(model, tokenizer, device)

    @classmethod
    def _from_adapter(cls, folder: Path, device: Any, dtype: torch.dtype,
                      base: str | os.PathLike | PreTrainedModel | None, trainable: bool) -> LLMAgent:
        peft = _import_peft("loading the LoRA checkpoint " + repr(str(folder)))
        if base is None:
            base = json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path") or None
        if base is None:
            raise FileNotFoundError(f"{str(folder)!r} holds a LoRA adapter whose base model is not a folder (a tiny "
                                    "model built in-process): load it with its run's config (base=...)")
        if not isinstance(base, PreTrainedModel):
            base = cls.from_pretrained(base, device="cpu", dtype=dtype).model
        with _no_progress_bars():
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = peft.PeftModel.from_pretrained(base, str(folder), is_trainable=trainable)
        return cls(model, tokenizer, device)

    def add_lora(self, r: int, alpha: float, dropout: float = 0.0, target_modules: str = "all-linear") -> None:
        """Wrap the model in a LoRA adapter (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large
        Language Models") through peft: only the adapter's weights train. `target_modules` is
        ``all-linear`` (peft: every linear layer but the output head) or comma-separated module names."""
        peft = _import_peft("--lora-r")
        targets = target_modules if target_modules == "all-linear" else [
            name.strip() for name in target_modules.split(",") if name.strip()]
        config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                                 task_type="CAUSAL_LM")
        try:
            self.model = peft.get_peft_model(self.model, config)
        except ValueError as err:
            raise ValueError(f"lora_target_modules={target_modules!r} does not fit the model: {err}") from None

    @property
    def is_lora(self) -> bool:
        """Whether the model is a peft model (a LoRA adapter on a frozen base)."""
        return hasattr(self.model, "disable_adapter")

    def base_model(self) -> contextlib.AbstractContextManager:
        """Context in which the model is its base, adapter off (the LoRA run's reference policy);
        a no-op for a model without adapter."""
        return self.model.disable_adapter() if self.is_lora else contextlib.nullcontext()

    def merge_lora(self) -> None:
        """Merge the adapter into the base weights, in place (peft's ``merge_and_unload``): the
        model becomes a plain Hugging Face model that `save` writes whole and loads without peft."""
        if not self.is_lora:
            raise ValueError("merge_lora() needs a LoRA model: this one has no adapter")
        self.model = self.model.merge_and_unload()

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
        """The tokenizer's EOS id (padding and the tiny format use it)."""
        return int(self.tokenizer.eos_token_id)

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """Every id that ends a completion: the tokenizer's EOS and each EOS of the model's
        `generation_config` (an int or a list; e.g. an instruct model's end-of-turn token as well
        as its end-of-text token), as `transformers`' `generate` stops on all of them."""
        ids = {self.eos_token_id}
        config_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if config_eos is not None:
            ids.update([int(config_eos)] if isinstance(config_eos, int) else (int(i) for i in config_eos))
        return frozenset(ids)

    # ------------------------------------------------------------------ prompts
    def uses_chat_template(self, text_format: TextFormat) -> bool:
        """Whether prompts go through the tokenizer's chat template under `text_format`
        (``auto``: when the tokenizer has one). ``on`` for a tokenizer without one raises."""
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if text_format.chat_template == "on" and not has_template:
            raise ValueError("chat_template='on' but this model's tokenizer has no chat template (no "
                             "chat_template in its tokenizer_config.json or chat_template.jinja): use "
                             "--chat-template auto or off")
        return text_format.chat_template == "on" or (text_format.chat_template == "auto" and has_template)

    def format_prompts(self, prompts: Sequence[str], text_format: TextFormat) -> list[str]:
        """The text the model reads for each prompt: the prompt itself, or under the chat template
        ``[system message (if any), user message = the prompt]`` rendered with the assistant's
        generation prompt (``apply_chat_template(..., add_generation_prompt=True,
        tokenize=False)``, as TRL's ``maybe_apply_chat_template``)."""
        if not self.uses_chat_template(text_format):
            return list(prompts)
        system = text_format.system_message()
        head = [{"role": "system", "content": system}] if system else []
        return [self.tokenizer.apply_chat_template([*head, {"role": "user", "content": p}], tokenize=False,
                                                   add_generation_prompt=True) for p in prompts]

    def encode_prompts(self, prompts: Sequence[str], text_format: TextFormat) -> tuple[torch.Tensor, torch.Tensor]:
        """`(ids [P, W], mask [P, W])` of the formatted prompts, left-padded, on the agent's device.
        A chat-templated text already holds the template's special tokens (its BOS, if any), so it
        is tokenised without adding them again."""
        chat = self.uses_chat_template(text_format)
        enc = self.tokenizer(self.format_prompts(prompts, text_format), return_tensors="pt", padding=True,
                             add_special_tokens=not chat)
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def choice_constraint(self, answers: Sequence[str], max_new_tokens: int) -> ChoiceConstraint:
        """The `ChoiceConstraint` of `answers` for this tokenizer, EOS ids and budget (built once each)."""
        key = (tuple(answers), max_new_tokens, self.eos_token_ids)
        cache = self.__dict__.setdefault("_choice_constraints", {})
        if key not in cache:
            cache[key] = ChoiceConstraint.build(self.tokenizer, answers, self.eos_token_ids, max_new_tokens)
        return cache[key]

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, prompts: list[str], num_samples: int = 1, temperature: float = 1.0, top_p: float = 1.0,
                 max_new_tokens: int = 4, greedy: bool = False, generator: torch.Generator | None = None,
                 text_format: TextFormat | None = None) -> Completions:
        """`num_samples` completions of every prompt, sampled in one batch with a KV cache.

        Each prompt is formatted (`format_prompts`: the chat template or not, per `text_format`,
        default: plain prompts, strict one-word answers), encoded once, and its cache repeated
        `num_samples` times. Sampling is from ``softmax(logits / temperature)`` restricted to the
        top-p nucleus (`greedy` takes the argmax); a row stops at its first EOS (any of
        `eos_token_ids`; then it gets pad tokens) or at `max_new_tokens`. Under the ``choice``
        answer format the logits are first masked to the tokens `ChoiceConstraint` allows (top-p
        then applies to the renormalised allowed set). `generator` (on the model's device) makes
        the draws reproducible.
        """
        if not prompts:
            raise ValueError("generate needs at least one prompt")
        text_format = TextFormat() if text_format is None else text_format
        model, tok, device = self.model, self.tokenizer, self.device
        eos_ids = torch.tensor(sorted(self.eos_token_ids), device=device)
        constraint = (self.choice_constraint(text_format.answers, max_new_tokens)
                      if text_format.answer_format == "choice" else None)
        prompt_ids, prompt_mask = self.encode_prompts(prompts, text_format)
        was_training = model.training
        model.eval()
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
        nodes = torch.zeros(rows, dtype=torch.long, device=device)  # trie nodes of the choice constraint
        mask = prompt_mask
        tokens = []
        for step in range(max_new_tokens):
            scaled = torch.log_softmax(logits / temperature, -1)
            if constraint is not None:
                allowed = constraint.masks(nodes, torch.full_like(nodes, step), scaled.shape[-1])
                scaled = torch.log_softmax(scaled.masked_fill(~allowed, float("-inf")), -1)
            if greedy:
                token = scaled.argmax(-1)
            else:
                probs = _top_p_filter(scaled, top_p).softmax(-1)
                token = torch.multinomial(probs, 1, generator=generator)[:, 0]
            token = torch.where(finished, torch.full_like(token, tok.pad_token_id), token)
            tokens.append(token)
            if constraint is not None:
                nodes = constraint.advance_batch(nodes, token)
            finished = finished | torch.isin(token, eos_ids)
            if bool(finished.all()) or step + 1 == max_new_tokens:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            out = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_pos,
                        use_cache=True, **{cache_kw: cache})
            cache, logits, next_pos = _output_cache(out), out.logits[:, -1].float(), next_pos + 1
        model.train(was_training)
        completion_ids = torch.stack(tokens, 1)
        completion_mask = eos_mask(completion_ids, self.eos_token_ids)
        texts = self.decode(completion_ids, skip_special_tokens=text_format.answer_format != "word")
        return Completions(prompt_ids, prompt_mask, completion_ids, completion_mask, texts, num_samples, constraint)

    def decode(self, completion_ids: torch.Tensor, skip_special_tokens: bool = False) -> list[str]:
        """Each row up to (not including) its first EOS (any of `eos_token_ids`).

        Special tokens are kept by default: the strict ``word`` format of the tiny model reads a
        stray pad or bos as a malformed answer instead of letting it vanish. The other formats
        (``generate`` decides) drop them, as an instruct model's text is read without its
        end-of-turn or padding tokens.
        """
        eos, texts = self.eos_token_ids, []
        for row in completion_ids.tolist():
            end = next((i for i, token in enumerate(row) if token in eos), len(row))
            texts.append(self.tokenizer.decode(row[:end], skip_special_tokens=skip_special_tokens))
        return texts

    # ------------------------------------------------------------------ log-probs
    def completion_logps(self, batch: Completions, model: PreTrainedModel | None = None,
                         temperature: float = 1.0, share_prompt: bool = True, with_entropy: bool = False,
                         chunk_size: int | None = 1024) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probs `[S, T]` of the completion tokens under `model` (default: this
        agent's) by a forward pass; positions after the first EOS are 0 (mask them with
        `batch.completion_mask`). Gradients flow when called outside `torch.no_grad()`.
        `with_entropy` also returns the entropy `[S, T]` of each position's next-token distribution.

        As TRL's ``GRPOTrainer._get_per_token_logps``: logits are divided by the sampling
        temperature, only the positions that predict completion tokens are projected to the
        vocabulary, and the log-prob is gathered after a log-softmax in float32. With
        `share_prompt` (and G > 1) each prompt runs once and its KV cache is repeated for its G
        completions (a differentiable `repeat_interleave`), which gives the same values and
        gradients as G full passes at about 1/G of the prompt cost.

        Memory: the transformer runs once to its last hidden states `[S, T, H]`; then the output
        head, the float32 log-softmax, the gather and the entropy run on `chunk_size` completion
        positions at a time (only positions inside `completion_mask`; None or 0: all at once), each
        chunk under activation checkpointing when gradients flow, so no `[S, T, V]` float32 tensor
        (nor its autograd copies) is ever alive: the peak is `chunk_size x V`. The chunked loss of
        Liger-Kernel's fused linear cross-entropy and of TRL's ``selective_log_softmax`` works the
        same way. A model whose logits are not ``head(hidden)`` (`_output_head`) produces its
        logits `[S, T, V]` in its own dtype, and only the float32 part is chunked.

        A batch generated under the ``choice`` answer format (`batch.constraint`) is scored under
        the same mask: log-softmax and entropy over the allowed tokens only (`ChoiceConstraint`).
        """
        model = self.model if model is None else model
        split = _output_head(model)
        runner, head = (model, None) if split is None else split
        features = self._completion_features(batch, runner, split is not None, share_prompt)  # [S, T, H or V]
        rows, cols = batch.completion_mask.nonzero(as_tuple=True)
        targets = batch.completion_ids[rows, cols]
        allowed_at = None
        if batch.constraint is not None:
            nodes = batch.constraint.walk(batch.completion_ids)[rows, cols]
            allowed_at = (batch.constraint, nodes, cols)
        picked = features[rows, cols]  # [N, H or V]
        size = len(targets) if not chunk_size or chunk_size <= 0 else chunk_size
        logps, entropies = [], []
        for start in range(0, len(targets), max(1, size)):
            piece = slice(start, start + size)
            allowed = None
            if allowed_at is not None:
                constraint, nodes, steps = allowed_at
                vocab = features.shape[-1] if head is None else head.weight.shape[0]
                allowed = constraint.masks(nodes[piece], steps[piece], vocab)

            def chunk(x: torch.Tensor, target=targets[piece], allowed=allowed) -> tuple[torch.Tensor, torch.Tensor]:
                logits = (x if head is None else head(x)).float() / temperature
                log_probs, entropy = _masked_log_softmax(logits, allowed)
                return log_probs.gather(-1, target[:, None])[:, 0], entropy

            x = picked[piece]
            if torch.is_grad_enabled() and x.requires_grad and size < len(targets):
                logp, entropy = torch.utils.checkpoint.checkpoint(chunk, x, use_reentrant=False)
            else:
                logp, entropy = chunk(x)
            logps.append(logp)
            entropies.append(entropy)
        shape = batch.completion_ids.shape
        zeros = torch.zeros(shape, device=picked.device, dtype=torch.float32)
        logp = zeros.index_put((rows, cols), torch.cat(logps)) if logps else zeros
        if not with_entropy:
            return logp
        entropy = zeros.index_put((rows, cols), torch.cat(entropies)) if entropies else zeros
        return logp, entropy

    @staticmethod
    def _completion_features(batch: Completions, runner: Any, hidden: bool, share_prompt: bool) -> torch.Tensor:
        """`[S, T, F]` at the positions that predict each completion token: the last hidden states
        of the decoder `runner` (`hidden`, F = H) or the logits of the full model (F = V)."""
        G, width = batch.group_size, batch.completion_ids.shape[1]

        def run(keep: int, **kwargs: Any) -> Any:
            return runner(**kwargs) if hidden else runner(logits_to_keep=keep, **kwargs)

        def features(out: Any) -> torch.Tensor:
            return out.last_hidden_state if hidden else out.logits

        if not share_prompt or G == 1:
            ids = torch.cat([batch.prompt_ids, batch.completion_ids], 1)
            mask = torch.cat([batch.prompt_mask, batch.completion_mask.long()], 1)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = run(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, keep=width + 1)
            return features(out)[:, -width - 1:-1]
        prompt_mask = batch.prompt_mask[::G]
        positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        out = run(input_ids=batch.prompt_ids[::G], attention_mask=prompt_mask, position_ids=positions,
                  use_cache=True, keep=1)
        first = features(out)[:, -1:].repeat_interleave(G, 0)  # [S, 1, F]: predicts completion token 0
        if width == 1:
            return first
        cache = _output_cache(out)
        cache.batch_repeat_interleave(G)
        mask = torch.cat([batch.prompt_mask, batch.completion_mask[:, :-1].long()], 1)
        steps = torch.arange(1, width, device=positions.device)
        rest = run(input_ids=batch.completion_ids[:, :-1], attention_mask=mask,
                   position_ids=positions[:, -1:].repeat_interleave(G, 0) + steps, use_cache=True, keep=0,
                   **{_cache_keyword(runner): cache})
        return torch.cat([first, features(rest)], 1)


__all__ = [
    "SPECIAL_TOKENS",
    "UNCONSTRAINED",
    "ChoiceConstraint",
    "Completions",
    "LLMAgent",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "eos_mask",
]
