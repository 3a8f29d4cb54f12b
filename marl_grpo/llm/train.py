"""The LLM-agent trainer: a causal LM answers text prompts of soccer states and learns by GRPO.

    marl-grpo llm --preset tiny                        # tiny Llama from scratch on CPU: runs/llm-tiny/
    marl-grpo llm --preset tiny --task direction       # the text-only verifiable task
    marl-grpo llm --preset gpu --model PATH --bf16     # a local Hugging Face model on a GPU
    marl-grpo llm --preset tiny --loss-type sapo --advantage-baseline loo   # another TRL loss, RLOO's baseline

`LLMTrainer` supplies the LLM's side of the shared run loop (`marl_grpo.run.loop`). One iteration:

1. **prompts**: P soccer states drawn from bot matches, rendered as text (`marl_grpo.llm.tasks`);
2. **generation**: G sampled completions per prompt (temperature, top-p), batched;
3. **rewards**: each completion is parsed strictly; its action is played forward H steps in a
   branched copy of the state, or checked against the truth; a malformed answer gets
   ``-format_penalty`` on top;
4. **advantages**: `marl_grpo.advantages.group_advantages` over each prompt's G completions
   (DeepSeekMath's GRPO, Shao et al. 2024, eq. 3), with the ``advantage_baseline`` (mean, or
   RLOO's leave-one-out) and ``reward_aggregation`` of the reward's two components, the answer
   score and the format term (TRL's multi_objective_aggregation; GDPO normalises each first);
5. **update**: old (and reference) per-token log-probs are computed once, then `update_epochs`
   passes of the shared update step (`marl_grpo.run.update.policy_update`, on the loss core
   `marl_grpo.losses.policy_loss`: every TRL 1.16 ``loss_type``, grpo / bnpo / dr_grpo / dapo /
   cispo / sapo / luspo / vespo, ``ratio_level`` token or sequence = GSPO, clip-higher,
   ``delta``, off-policy masking, k3 KL), as TRL's `GRPOTrainer` does;
6. **log, evaluate, checkpoint**: TensorBoard (`llm/*`, `losses/*`, `eval/*`); the model and
   tokenizer in Hugging Face format under ``runs/<name>/checkpoint``.

TensorBoard tags, per iteration: ``llm/reward_mean`` (with the format penalty), ``llm/reward_std``
and ``llm/frac_zero_std`` (TRL's group diagnostics), ``llm/invalid_frac`` (malformed answers),
``llm/answer_reward`` (task reward, a malformed answer counting 0: comparable with chance),
``llm/reward_chance`` (a uniformly random valid answer) and ``llm/reward_oracle`` (the best
answer) on the same prompts, ``llm/completion_len`` (tokens, EOS included),
``llm/tokens_per_s`` (prompt + completion tokens of the batch per second of the iteration),
``llm/gen_tokens_per_s`` (completion tokens per second of generation), ``losses/*`` (the stats of
`policy_loss`); every `eval_every` iterations, on fixed held-out prompts: ``eval/reward_greedy``,
``eval/reward_sampled``, ``eval/invalid_frac_*`` and the baselines ``eval/reward_chance``,
``eval/reward_best_constant``, ``eval/reward_oracle``.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from marl_grpo.advantages import group_advantages, group_stats
from marl_grpo.llm.config import LLMConfig
from marl_grpo.llm.evaluate import autocast, evaluate_llm, make_eval_set
from marl_grpo.llm.tasks import PromptBatch, answer_rewards, make_task, reward_components
from marl_grpo.run.distributed import Shard
from marl_grpo.run.files import EVAL_SEED, LLM_CONFIG_FILE
from marl_grpo.run.loop import Trainer, run_training
from marl_grpo.run.update import UpdateBatch


def load_agent(cfg: LLMConfig, device: torch.device, path: str | Path | None = None):
    """The agent to train: from `path` (a checkpoint), `cfg.model`, or a fresh tiny model."""
    from marl_grpo.agents.llm import LLMAgent

    path = path or cfg.model
    if path:
        return LLMAgent.from_pretrained(path, device=device)
    return LLMAgent.tiny(seed=cfg.seed, device=device, hidden_size=cfg.tiny_hidden, num_layers=cfg.tiny_layers,
                         num_heads=cfg.tiny_heads, intermediate_size=cfg.tiny_intermediate)


@dataclass
class LLMBatch:
    """One iteration's prompts, completions and their rewards (S = P x G completions)."""

    prompts: PromptBatch
    completions: Any  # marl_grpo.agents.llm.Completions
    rewards: torch.Tensor  # [S] with the format penalty
    task_rewards: torch.Tensor  # [S]
    valid: torch.Tensor  # [S] bool
    table: torch.Tensor  # [P, A] the reward of every answer
    generation_seconds: float


class LLMTrainer(Trainer):
    """The LLM's side of a run: the agent, its optimiser and reference model, the task and the
    held-out evaluation prompts."""

    evaluate_first = True
    history_tags = ("llm/reward_mean", "llm/answer_reward", "llm/reward_chance", "llm/invalid_frac")

    def __init__(self, cfg: LLMConfig, device: torch.device, checkpoint: Path | None, shard: Shard = Shard()):
        if cfg.bf16 and device.type != "cuda":
            raise ValueError(f"bf16=True is for CUDA devices, but the device is {device}; drop --bf16 or use a GPU")
        self.cfg, self.device, self.shard = cfg, device, shard
        # this rank's prompts: whole groups of G completions, their own matches and sampling stream
        self.num_prompts = shard.split(cfg.prompts_per_step, "prompts_per_step")
        if self.num_prompts % cfg.num_minibatches:
            raise ValueError(f"num_minibatches={cfg.num_minibatches} must divide the {self.num_prompts} prompts "
                             f"of each of the {shard.world_size} processes")
        seed = cfg.seed + shard.rank
        self.agent = load_agent(cfg, device, checkpoint)
        model = self.agent.model
        self.ref_model = copy.deepcopy(model).eval().requires_grad_(False) if cfg.kl_coef > 0 else None
        self.parameters = list(model.parameters())
        self.optimizer = torch.optim.AdamW(self.parameters, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.task = make_task(cfg, self.num_prompts, cfg.group_size, seed, device)
        if shard.is_main:  # rank 0 evaluates
            self.eval_task, self.eval_batch, self.eval_table = make_eval_set(cfg, device)
        self.update_generator = self.generator = torch.Generator(device=device).manual_seed(seed)
        self.eval_generator = torch.Generator(device=device)

    @property
    def num_iterations(self) -> int:
        return self.cfg.total_iterations

    # ------------------------------------------------------------------ one iteration
    def collect(self) -> LLMBatch:
        cfg = self.cfg
        prompts = self.task.draw()
        start = time.perf_counter()
        with autocast(cfg, self.device):
            completions = self.agent.generate(prompts.prompts, cfg.group_size, temperature=cfg.temperature,
                                              top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                              generator=self.generator)
        seconds = time.perf_counter() - start
        rewards, task_rewards, valid, table = answer_rewards(self.task, prompts, completions.texts, cfg.group_size,
                                                             cfg.format_penalty)
        return LLMBatch(prompts, completions, rewards, task_rewards, valid, table, seconds)

    def advantages(self, batch: LLMBatch) -> tuple[UpdateBatch, dict[str, float]]:
        """Group advantages [S] of the completions, and their old and reference log-probs.

        Old log-probs come from one pass before the first epoch, as TRL's `GRPOTrainer` does; with
        a single epoch and minibatch they equal the current ones, so (as TRL) the detached current
        log-probs stand in for them and the ratio is exactly 1.
        """
        cfg, agent, completions = self.cfg, self.agent, batch.completions
        components, weights = reward_components(batch.task_rewards, batch.valid, cfg.format_penalty)  # [S, F], [F]
        advantages = group_advantages(components, group_size=cfg.group_size, scale=cfg.scale,
                                      baseline=cfg.advantage_baseline, aggregation=cfg.reward_aggregation,
                                      components=True, reward_weights=weights).to(self.device)
        with torch.no_grad(), autocast(cfg, self.device):
            old_logp = (agent.completion_logps(completions, temperature=cfg.temperature)
                        if cfg.update_epochs > 1 or cfg.num_minibatches > 1 else None)
            ref_logp = (agent.completion_logps(completions, model=self.ref_model, temperature=cfg.temperature)
                        if self.ref_model is not None else None)
        agent.model.train()

        def log_probs(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with autocast(cfg, self.device):
                return agent.completion_logps(completions.select(rows), temperature=cfg.temperature,
                                              with_entropy=True)

        update = UpdateBatch(advantages=advantages, log_probs=log_probs, num_units=len(completions) // cfg.group_size,
                             unit_rows=completions.group_rows, old_logp=old_logp, ref_logp=ref_logp,
                             mask=completions.completion_mask, max_len=cfg.max_new_tokens)
        stats = {f"llm/{k}": float(v) for k, v in group_stats(batch.rewards, group_size=cfg.group_size).items()}
        return update, stats

    def batch_scalars(self, batch: LLMBatch, seconds: float, collect_seconds: float) -> dict[str, float]:
        completions, table = batch.completions, batch.table
        tokens = float(completions.prompt_mask.sum() + completions.completion_mask.sum())
        answer_reward = torch.where(batch.valid, batch.task_rewards, torch.zeros_like(batch.task_rewards))
        return {
            "llm/reward_mean": float(batch.rewards.mean()),
            "llm/invalid_frac": float((~batch.valid).float().mean()),
            "llm/answer_reward": float(answer_reward.mean()),
            "llm/reward_chance": float(table.mean(1).mean()),
            "llm/reward_oracle": float(table.max(1).values.mean()),
            "llm/completion_len": float(completions.lengths.float().mean()),
            "llm/tokens_per_s": tokens / seconds,
            "llm/gen_tokens_per_s": float(completions.completion_mask.sum()) / batch.generation_seconds,
            "llm/learning_rate": self.optimizer.param_groups[0]["lr"],
        }

    def refresh_reference(self) -> None:
        if self.ref_model is not None:
            self.ref_model.load_state_dict(self.agent.model.state_dict())

    def evaluate(self) -> dict[str, float]:
        self.eval_generator.manual_seed(self.cfg.seed + EVAL_SEED)
        return evaluate_llm(self.agent, self.cfg, self.eval_batch, self.eval_table, self.eval_task.answers,
                            self.eval_generator)

    def progress(self, scalars: dict[str, float], last_eval: dict[str, float]) -> dict[str, str]:
        return {"reward": f"{scalars['llm/answer_reward']:.2f}", "chance": f"{scalars['llm/reward_chance']:.2f}",
                "invalid": f"{scalars['llm/invalid_frac']:.2f}"}

    # ------------------------------------------------------------------ run summary and checkpoints
    def hyperparameters(self) -> dict[str, Any]:
        return {**self.cfg.to_dict(), "model_parameters": self.agent.num_parameters()}

    def texts(self) -> dict[str, str]:
        return {"example_prompt": self.eval_batch.prompts[0]}

    def write_checkpoint(self, folder: Path) -> None:
        """Hugging Face files (`save_pretrained` of model and tokenizer) + `llm_config.json`."""
        if not all(bool(torch.isfinite(p).all()) for p in self.parameters):
            raise FloatingPointError("the model holds non-finite weights: they are not saved, and the last "
                                     "checkpoint keeps the last finite ones")
        self.agent.save(folder)
        (folder / LLM_CONFIG_FILE).write_text(json.dumps(self.cfg.to_dict(), indent=2))

    @classmethod
    def saved_config(cls, checkpoint: Path) -> dict[str, Any]:
        file = checkpoint / LLM_CONFIG_FILE
        try:
            return json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{str(file)!r} cannot be read ({err}): the checkpoint is damaged") from None

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(),
                "ref_model": None if self.ref_model is None else self.ref_model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ref_model is not None and state.get("ref_model") is not None:
            self.ref_model.load_state_dict(state["ref_model"])

    def rank_state_dict(self) -> dict[str, Any]:
        return {"task": self.task.state_dict(), "generator": self.generator.get_state()}

    def load_rank_state_dict(self, state: dict[str, Any]) -> None:
        self.task.load_state_dict(state["task"])
        self.generator.set_state(state["generator"])

    def summary(self, global_step: int, elapsed: float) -> dict[str, Any]:
        return {"model_parameters": self.agent.num_parameters()}


def train_llm(cfg: LLMConfig) -> dict[str, Any]:
    """Run (or resume) an LLM-agent GRPO run; returns the last evaluation, the per-iteration
    history of the main figures (`LLMTrainer.history_tags`) and timings."""
    return run_training(LLMTrainer, cfg)
