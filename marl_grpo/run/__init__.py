"""What every training run shares, soccer and LLM alike.

- `config.RunConfig`: the shared config fields (run, budget and cadence, policy loss and optimiser);
- `loop.run_training` and `loop.Trainer`: the one training loop, and what a mode supplies to it;
- `update.policy_update` and `update.UpdateBatch`: the one update step;
- `checkpoint`: the atomic checkpoint writer and the soccer policy's files;
- `files`: file names and fixed seeds; `logger.Logger`: TensorBoard; `presets`: presets and CLI parsing.

This package imports neither `marl_grpo.rl` nor `marl_grpo.llm`.
"""
