"""Recipe: train an LLM to play soccer through tool calls with TRL's `GRPOTrainer(environment_factory=...)`.

Install the extra once (TRL 1.16 with datasets, accelerate, pandas, pyarrow; torch stays as pinned)::

    pip install -c constraints.txt -e ".[llm,trl]"

Run (CPU is fine for the default tiny budget; nothing is downloaded)::

    python scripts/recipe_trl.py                          # tiny Llama-style model built from a config
    python scripts/recipe_trl.py --model path/to/Qwen3-0.6B --steps 50 --max-completion-length 1024

Every rollout is one match (`marl_grpo.llm.trl_env.SoccerToolEnv`): ``reset`` describes the kickoff
from the controlled player's side, the model calls ``move(direction)``, ``stay()`` or ``kick()``
(each plays `--hold` steps, the scripted bot plays everyone else) and reads the new situation, until
it stops calling tools, the match ends or the token budget is spent; the reward (``get_reward``) is
the player's summed env reward over the whole match, the steps no tool call covered being played
with the player standing still. Rollouts of one prompt share the match seed, so GRPO compares
the G episodes played from the same kickoff.

With the default tiny model the tokenizer is the word-level one with a tool-calling chat template
(`build_tiny_tool_tokenizer`), and `--format-steps` supervised steps on random valid tool calls
(`teach_tool_format`) first teach the freshly initialised model the call syntax: without them it
would never call a tool. A `--model` folder must hold a causal LM whose chat template TRL can parse
tool calls from (one of the families `trl.chat_template_utils.add_response_schema` knows: Qwen 2.5 / 3 /
3.5, Llama 3.1 / 3.2, GLM-4-MoE, GPT-OSS, ...; or a tokenizer with its own ``response_template``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="", help="local folder of a causal LM and its tokenizer (default: tiny model)")
    p.add_argument("--output-dir", default="runs/trl-recipe", help="TRL's output_dir; the final model is saved there")
    p.add_argument("--steps", type=int, default=4, help="GRPO steps (max_steps)")
    p.add_argument("--matches-per-step", type=int, default=2, help="distinct kickoffs (prompts) per step")
    p.add_argument("--num-generations", type=int, default=4, help="G: episodes per kickoff")
    p.add_argument("--max-completion-length", type=int, default=256, help="tokens of a whole episode (calls + results)")
    p.add_argument("--max-tool-calls", type=int, default=4, help="tool-calling rounds per episode")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--team-size", type=int, default=1)
    p.add_argument("--hold", type=int, default=4, help="env steps per tool call")
    p.add_argument("--max-cycles", type=int, default=60, help="steps of a match")
    p.add_argument("--bot", default="team", help="scripted bot of the other players: random, chaser or team")
    p.add_argument("--format-steps", type=int, default=120, help="tiny model only: supervised tool-format steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", action="store_true", help="stay on the CPU even when a GPU is there")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # environment_factory is experimental in TRL 1.16
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from marl_grpo.llm.trl_env import (
        TOOL_CHAT_TEMPLATE,
        TOOL_RESPONSE_TEMPLATE,
        SoccerToolEnv,
        build_tiny_tool_model,
        build_tiny_tool_tokenizer,
        teach_tool_format,
    )

    torch.manual_seed(args.seed)

    def make_env() -> SoccerToolEnv:
        return SoccerToolEnv(team_size=args.team_size, hold=args.hold, max_cycles=args.max_cycles, bot=args.bot,
                             seed=args.seed)

    if args.model:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not (Path(args.model) / "config.json").is_file():
            raise SystemExit(f"--model {args.model!r}: expected a local folder with config.json, the weights and the "
                             "tokenizer (nothing is downloaded)")
        tokenizer = AutoTokenizer.from_pretrained(args.model, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(args.model, local_files_only=True, dtype=torch.float32)
        if tokenizer.chat_template == TOOL_CHAT_TEMPLATE and getattr(tokenizer, "response_template", None) is None:
            tokenizer.response_template = TOOL_RESPONSE_TEMPLATE  # a tiny model saved by this recipe
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    else:
        tokenizer = build_tiny_tool_tokenizer()
        model = build_tiny_tool_model(tokenizer, seed=args.seed)
        if args.format_steps:
            start = time.perf_counter()
            losses = teach_tool_format(model, tokenizer, make_env, steps=args.format_steps, seed=args.seed)
            print(f"tool-format warm-up: {args.format_steps} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f} "
                  f"({time.perf_counter() - start:.1f} s)")

    G = args.num_generations
    rows = args.matches_per_step * args.steps
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": ""}]] * rows,  # reset() writes the prompt
                                 "seed": [args.seed + k for k in range(rows)]})
    config = GRPOConfig(
        output_dir=args.output_dir, max_steps=args.steps, per_device_train_batch_size=args.matches_per_step * G,
        num_generations=G, max_completion_length=args.max_completion_length,
        max_tool_calling_iterations=args.max_tool_calls, learning_rate=args.learning_rate, beta=0.0,
        logging_steps=1, report_to="none", save_strategy="no", use_cpu=args.cpu or not torch.cuda.is_available(),
        seed=args.seed, disable_tqdm=True, shuffle_dataset=False,
    )
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=config, train_dataset=dataset,
                          environment_factory=make_env)
    trainer.remove_callback(PrinterCallback)  # the per-step summary below replaces its raw log dicts
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    for row in trainer.state.log_history:
        if "reward" in row:
            print(f"step {row['step']}: reward {row['reward']:+.5f} (std {row['reward_std']:.5f}), "
                  f"tool calls per episode {row['tools/call_frequency']:.2f}, "
                  f"failed {row['tools/failure_frequency']:.0%}, "
                  f"model tokens per episode {row['completions/mean_length']:.1f}")
    trainer.save_model(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    print(f"{args.steps} GRPO steps in {seconds:.1f} s; model saved to {args.output_dir}")
    rewards = [row["reward"] for row in trainer.state.log_history if "reward" in row]
    return {"seconds": seconds, "first_reward": rewards[0], "last_reward": rewards[-1]}


if __name__ == "__main__":
    main()
