"""Tools built on training runs: `compare` (GRPO vs PPO over seeds), `study` (group modes side by
side) and `bench` (env and training throughput). Only the command line imports this package."""
