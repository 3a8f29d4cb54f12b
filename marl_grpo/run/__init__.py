"""What every training run shares, soccer and LLM alike.

- `config.RunConfig`: the shared config fields (run, budget and cadence, policy loss and optimiser);
- `loop.run_training` and `loop.Trainer`: the one training loop, and what a mode supplies to it;
- `update.policy_update` and `update.UpdateBatch`: the one update step;
- `checkpoint`: the atomic checkpoint writer and the trainer state; `distributed`: torchrun, ranks, devices;
- `files`: file names and fixed seeds; `logger.Logger`: TensorBoard; `presets`: presets and CLI parsing.
- `threads`: the OpenMP wait policy the command chooses at start, and torch's thread count held for a call.
- `intervals`: Wilson and bootstrap intervals of match results, for the soccer and LLM evaluations.

This package knows no game and no model: it imports nothing of `marl_grpo.envs`, `marl_grpo.agents`,
`marl_grpo.rl` or `marl_grpo.llm` (`tests/test_layout.py`). Each mode brings its own files and networks.
"""
