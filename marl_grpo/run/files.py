"""File names and fixed seeds that every run, tool and command shares: one place to change them.

A run folder is ``<log_dir>/<name>/``: TensorBoard event files, and ``checkpoint/`` with

- soccer: the policy's files (`marl_grpo.agents.checkpoint.POLICY_FILE`, `POLICY_CONFIG_FILE`:
  what ``eval`` and ``watch`` read) + `STATE_FILE`;
- LLM: the Hugging Face files of ``save_pretrained`` (whose ``config.json`` is the *model's*
  config, hence the LLM run config's own name `LLM_CONFIG_FILE`) + `STATE_FILE`;

and, for a soccer run against a league, ``league/`` with its pool's snapshots.
"""

CHECKPOINT_DIR = "checkpoint"
"""the checkpoint folder inside a run folder (replaced atomically at every save)"""
COMPLETE_FILE = "COMPLETE"
"""written last into a checkpoint folder: the folder is whole (`marl_grpo.run.checkpoint.atomic_directory`)"""
STATE_FILE = "trainer_state.pt"
"""everything exact resume needs beyond the weights: optimiser, counters, env state, random streams"""
LLM_CONFIG_FILE = "llm_config.json"
"""the LLM run's config, beside the model's Hugging Face ``config.json``"""
COMPLETIONS_FILE = "completions.jsonl"
"""an LLM run's logged completions, one JSON object per row, in its run folder"""
LEAGUE_DIR = "league"
"""a league run's snapshots, one soccer checkpoint folder each (``league/snapshot-<iteration>``)"""
RESULT_FILE = "result.json"
"""the summary of a run that ended (last evaluation, counters, timings, config), in its run folder"""

EVAL_SEED = 10_000
"""first seed of the evaluation matches (and of the LLM's evaluation sampling), far from training seeds"""
STUDY_EVAL_SEED = 20_000
"""first seed of a study's final evaluation: matches no in-training evaluation has seen"""
