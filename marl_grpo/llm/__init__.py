"""LLM-agent mode: a causal language model plays soccer through text and learns by GRPO.

    from marl_grpo.llm import LLMConfig, train_llm      # needs the `llm` extra (transformers) to run
    result = train_llm(LLMConfig(name="my-llm-run"))

The config, tasks (prompts and the reward of an answer), training (`LLMTrainer` on the shared run
loop) and evaluation. Importing this package does not import transformers; training does.
"""

from marl_grpo.llm.config import PRESETS, LLMConfig, preset
from marl_grpo.llm.train import LLMTrainer, train_llm

__all__ = ["PRESETS", "LLMConfig", "LLMTrainer", "preset", "train_llm"]
