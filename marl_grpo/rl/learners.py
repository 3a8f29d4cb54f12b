"""The soccer learners by name: `marl-grpo train --algo NAME` picks one. Add a new one here."""

from __future__ import annotations

from marl_grpo.rl.grpo import GRPOLearner
from marl_grpo.rl.learner import Algorithm
from marl_grpo.rl.ppo import PPOLearner

LEARNERS: dict[str, type[Algorithm]] = {"grpo": GRPOLearner, "ppo": PPOLearner}
"""every learner by its `--algo` name"""

ALGOS = tuple(LEARNERS)
