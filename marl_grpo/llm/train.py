"""The LLM-agent trainer: a causal LM answers text prompts of soccer states and learns by GRPO.

    marl-grpo llm --preset tiny                        # tiny Llama from scratch on CPU: runs/llm-tiny/
    marl-grpo llm --preset tiny --task direction       # the text-only verifiable task
    marl-grpo llm --preset gpu --model PATH            # a local Hugging Face model on a GPU, bfloat16 forward
    marl-grpo llm --preset gpu --model PATH --lora-r 16 --gradient-checkpointing --gradient-accumulation-steps 4
    marl-grpo llm --preset tiny --loss-type sapo --advantage-baseline loo   # another TRL loss, RLOO's baseline

`LLMTrainer` supplies the LLM's side of the shared run loop (`marl_grpo.run.loop`). One iteration:

1. **prompts**: P soccer states drawn from bot matches, rendered as text (`marl_grpo.llm.tasks`);
2. **generation**: G sampled completions per prompt (temperature, top-p), batched, under the
   chat template when the tokenizer has one (``--chat-template``, ``--system-prompt``), masked to
   the answer words under ``--answer-format choice``;
3. **rewards**: each completion is parsed (``--answer-format``: word = strict, lenient, tag,
   choice; `marl_grpo.agents.llm_text.parse_answer`); its action is played forward H steps in a
   branched copy of the state, or checked against the truth; a malformed answer gets
   ``-format_penalty`` on top;
4. **advantages**: `marl_grpo.advantages.group_advantages` over each prompt's G completions
   (DeepSeekMath's GRPO, Shao et al. 2024, eq. 3), or over those of all LLM teammates of one
   state (``--group-mode branch+team`` with ``--llm-players``, see `LLMTrainer.groups`), with
   the ``advantage_baseline`` (mean, or RLOO's leave-one-out) and ``reward_aggregation`` of the
   reward's two components, the answer score and the format term (TRL's
   multi_objective_aggregation; GDPO normalises each first);
5. **update**: old (and reference) per-token log-probs are computed once, then `update_epochs`
   passes of the shared update step (`marl_grpo.run.update.policy_update`, on the loss core
   `marl_grpo.losses.policy_loss`: every TRL 1.16 ``loss_type``, grpo / bnpo / dr_grpo / dapo /
   cispo / sapo / luspo / vespo, ``ratio_level`` token or sequence = GSPO, clip-higher,
   ``delta``, off-policy masking, k3 KL), as TRL's `GRPOTrainer` does;
6. **log, evaluate, checkpoint**: TensorBoard (`llm/*`, `losses/*`, `eval/*`, and at every
   evaluation the text ``completions``: `log_completions` rows of the latest training batch, also
   appended to ``runs/<name>/completions.jsonl``); the model and tokenizer in Hugging Face format
   under ``runs/<name>/checkpoint`` (with LoRA, peft's adapter files: `--merge` exports a full model).

Precision and memory: master weights and AdamW state are float32 (a checkpoint whose config says
bfloat16 is loaded as float32); ``--dtype`` autocasts the forward passes only. With ``--lora-r``
only the adapter trains and the KL reference is the base with the adapter disabled, so the model
exists once; old and reference log-probs are computed under ``no_grad``; ``--gradient-checkpointing``
and ``--gradient-accumulation-steps`` (`marl_grpo.run.update.micro_batch_weights`) cut activations.

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
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from marl_grpo.advantages import group_advantages, group_stats
from marl_grpo.agents.llm_text import TextFormat, parse_answers
from marl_grpo.llm.build import autocast, make_task
from marl_grpo.llm.config import LLMConfig
from marl_grpo.llm.evaluate import evaluate_llm, make_eval_set
from marl_grpo.llm.tasks import PromptBatch, answer_rewards, reward_components
from marl_grpo.run import distributed
from marl_grpo.run.distributed import World
from marl_grpo.run.files import CHECKPOINT_DIR, COMPLETIONS_FILE, EVAL_SEED, LLM_CONFIG_FILE
from marl_grpo.run.loop import Trainer, run_training
from marl_grpo.run.update import UpdateBatch


def load_agent(cfg: LLMConfig, device: torch.device, path: str | Path | None = None):
    """The agent to train: from `path` (a checkpoint), `cfg.model`, or a fresh tiny model; with
    `cfg.lora_r` a LoRA adapter on it (a checkpoint's own adapter, re-attached to the base that
    `cfg.model` names or the tiny model rebuilds). Weights are float32 whatever the folder's
    config.json says (`--dtype` only sets the forward's autocast)."""
    from marl_grpo.agents.llm import LLMAgent

    def tiny(on: Any) -> LLMAgent:
        return LLMAgent.tiny(seed=cfg.seed, device=on, hidden_size=cfg.tiny_hidden, num_layers=cfg.tiny_layers,
                             num_heads=cfg.tiny_heads, intermediate_size=cfg.tiny_intermediate)

    if path is not None and cfg.lora_r:
        base = cfg.model or tiny("cpu").model
        agent = LLMAgent.from_pretrained(path, device=device, dtype=torch.float32, base=base, trainable=True)
    else:
        path = path or cfg.model
        agent = LLMAgent.from_pretrained(path, device=device, dtype=torch.float32) if path else tiny(device)
        if cfg.lora_r:
            agent.add_lora(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(agent.model)
    return agent


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute each decoder layer in the backward pass (Chen et al. 2016, "Training Deep Nets
    with Sublinear Memory Cost"), through transformers' non-reentrant `torch.utils.checkpoint`,
    which needs no input that requires grad, so a frozen (LoRA) embedding is fine. It acts in
    training mode with gradients only, where it also turns the KV cache off."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.25; the old name warns there
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


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

    def __init__(self, cfg: LLMConfig, device: torch.device, checkpoint: Path | None, world: World = World()):
        if cfg.merge and not cfg.lora_r:  # checked here, on the resumed run's own config
            raise ValueError(f"merge={cfg.merge!r} needs a LoRA run (--lora-r > 0): without LoRA the checkpoint "
                             "already is a full Hugging Face model")
        self.cfg, self.device, self.world = cfg, device, world
        # this rank's prompts: whole groups of G completions, their own matches and sampling stream
        self.num_prompts = world.split(cfg.prompts_per_step, "prompts_per_step")
        if self.num_prompts % cfg.num_minibatches:
            raise ValueError(f"num_minibatches={cfg.num_minibatches} must divide the {self.num_prompts} prompts "
                             f"of each of the {world.world_size} processes")
        seed = cfg.seed + world.rank
        self.agent = load_agent(cfg, device, checkpoint)
        model = self.agent.model
        # with LoRA the reference is the base itself, the adapter disabled (`LLMAgent.base_model`): no copy
        self.ref_model = (copy.deepcopy(model).eval().requires_grad_(False)
                          if cfg.kl_coef > 0 and not self.agent.is_lora else None)
        self.parameters = [p for p in model.parameters() if p.requires_grad]  # LoRA: the adapter's alone
        self.optimizer = torch.optim.AdamW(self.parameters, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.grad_scaler = torch.amp.GradScaler(device.type) if cfg.dtype == "float16" else None
        self.completion_rows: list[dict[str, Any]] = []  # of the latest batch, for `eval_texts`
        self.iteration = 0
        self.task = make_task(cfg, self.num_prompts, cfg.group_size, seed, device, agent=self.agent)
        # chat template, system prompt and answer format; a bad combination fails here, not mid-run
        self.text_format = TextFormat.from_config(cfg, self.task.answers)
        self.agent.uses_chat_template(self.text_format)
        if cfg.answer_format == "choice":
            self.agent.choice_constraint(self.task.answers, cfg.max_new_tokens)
        if world.is_main:  # rank 0 evaluates
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
                                              generator=self.generator, text_format=self.text_format)
        seconds = time.perf_counter() - start
        rewards, task_rewards, valid, table = answer_rewards(self.task, prompts, completions.texts, cfg.group_size,
                                                             cfg.format_penalty, cfg.answer_format)
        return LLMBatch(prompts, completions, rewards, task_rewards, valid, table, seconds)

    def advantages(self, batch: LLMBatch) -> tuple[UpdateBatch, dict[str, float]]:
        """Group advantages [S] of the completions, and their old and reference log-probs.

        Old log-probs come from one pass before the first epoch, as TRL's `GRPOTrainer` does; with
        a single epoch and minibatch they equal the current ones, so (as TRL) the detached current
        log-probs stand in for them and the ratio is exactly 1.
        """
        cfg, agent, completions = self.cfg, self.agent, batch.completions
        components, weights = reward_components(batch.task_rewards, batch.valid, cfg.format_penalty)  # [S, F], [F]
        groups = self.groups(batch.prompts)
        advantages = group_advantages(components, **groups, scale=cfg.scale,
                                      baseline=cfg.advantage_baseline, aggregation=cfg.reward_aggregation,
                                      components=True, reward_weights=weights).to(self.device)
        # gradient checkpointing turns the KV cache off in training mode: no shared prompt pass then
        share = not cfg.gradient_checkpointing
        with torch.no_grad(), autocast(cfg, self.device):
            old_logp = (agent.completion_logps(completions, temperature=cfg.temperature, share_prompt=share,
                                               chunk_size=cfg.logp_chunk_size)
                        if cfg.update_epochs > 1 or cfg.num_minibatches > 1 else None)
            ref_logp = None
            if cfg.kl_coef > 0:
                with agent.base_model():  # LoRA: the adapter off; else a no-op and self.ref_model
                    ref_logp = agent.completion_logps(completions, model=self.ref_model, temperature=cfg.temperature,
                                                      share_prompt=share, chunk_size=cfg.logp_chunk_size)
        agent.model.train()

        def log_probs(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with autocast(cfg, self.device):
                return agent.completion_logps(completions.select(rows), temperature=cfg.temperature,
                                              with_entropy=True, share_prompt=share,
                                              chunk_size=cfg.logp_chunk_size)

        update = UpdateBatch(advantages=advantages, log_probs=log_probs, num_units=len(completions) // cfg.group_size,
                             unit_rows=completions.group_rows, old_logp=old_logp, ref_logp=ref_logp,
                             mask=completions.completion_mask, max_len=cfg.max_new_tokens,
                             grad_scaler=self.grad_scaler)
        self.completion_rows = self.log_rows(batch, advantages)
        stats = {f"llm/{k}": float(v) for k, v in group_stats(batch.rewards, **groups).items()}
        return update, stats

    def groups(self, prompts: PromptBatch) -> dict[str, Any]:
        """The GRPO groups of the completions, as `group_advantages`' keywords. ``branch``: each
        prompt's G completions (DeepSeekMath's GRPO, Shao et al. 2024, sec. 4.1.2: G answers to one
        prompt; soccer's `branch` mode: one player across the G copies of a state). ``branch+team``:
        the completions of every LLM teammate of one state, K x G members, so each is measured
        against the mean (and std) of all its teammates' rewards in the G copies (soccer's
        `branch+team`, `marl_grpo.rl.groups.Groups.group_ids`)."""
        if self.cfg.group_mode == "branch":
            return {"group_size": self.cfg.group_size}
        return {"group_ids": self.task.team_group_ids(prompts, self.cfg.group_size)}

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

    def end_iteration(self, iteration: int) -> dict[str, float]:
        self.iteration = iteration + 1
        return {}

    def evaluate(self) -> dict[str, float]:
        """The held-out evaluation; also appends the latest batch's completion rows to
        ``completions.jsonl`` (rank 0 alone evaluates)."""
        self.eval_generator.manual_seed(self.cfg.seed + EVAL_SEED)
        if self.completion_rows:
            with self.completions_file.open("a") as f:
                for row in self.completion_rows:
                    f.write(json.dumps({"iteration": self.iteration, **row}) + "\n")
        return evaluate_llm(self.agent, self.cfg, self.eval_batch, self.eval_table, self.eval_task.answers,
                            self.eval_generator)

    # ------------------------------------------------------------------ completion logs
    @property
    def completions_file(self) -> Path:
        return Path(self.cfg.log_dir) / self.cfg.name / COMPLETIONS_FILE

    def log_rows(self, batch: LLMBatch, advantages: torch.Tensor) -> list[dict[str, Any]]:
        """The first `log_completions` completions of a training batch (whole groups first), as
        rows of prompt, completion, parsed action (None: malformed), reward (with the format
        penalty) and advantage. The training batch is where rewards and advantages exist, so the
        rows at an evaluation are those of the iteration just trained, not of the held-out prompts."""
        count = min(self.cfg.log_completions, len(batch.completions))
        if not count:
            return []
        texts = batch.completions.texts[:count]
        index, valid = parse_answers(texts, self.task.answers, self.cfg.answer_format)
        G = batch.completions.group_size
        adv = advantages[:count].reshape(count, -1)[:, 0].tolist()  # per sequence (a per-token one: its first)
        rewards = batch.rewards[:count].tolist()
        return [{"prompt": batch.prompts.prompts[i // G], "completion": texts[i],
                 "action": self.task.answers[int(index[i])] if bool(valid[i]) else None,
                 "reward": rewards[i], "advantage": adv[i]} for i in range(count)]

    def eval_texts(self) -> dict[str, str]:
        """The latest batch's completion rows as a markdown table (TensorBoard text ``completions``)."""
        if not self.completion_rows:
            return {}

        def cell(value: Any) -> str:
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            return text.replace("|", "\\|").replace("\n", "<br>")

        lines = ["| prompt | completion | action | reward | advantage |", "|-|-|-|-|-|"]
        lines += ["| " + " | ".join(cell(row[k]) for k in ("prompt", "completion", "action", "reward", "advantage"))
                  + " |" for row in self.completion_rows]
        return {"completions": "\n".join(lines)}

    def progress(self, scalars: dict[str, float], last_eval: dict[str, float]) -> dict[str, str]:
        return {"reward": f"{scalars['llm/answer_reward']:.2f}", "chance": f"{scalars['llm/reward_chance']:.2f}",
                "invalid": f"{scalars['llm/invalid_frac']:.2f}"}

    # ------------------------------------------------------------------ run summary and checkpoints
    def hyperparameters(self) -> dict[str, Any]:
        return {**self.cfg.to_dict(), "model_parameters": self.agent.num_parameters(),
                "trained_parameters": sum(p.numel() for p in self.parameters)}

    def texts(self) -> dict[str, str]:
        return {"example_prompt": self.eval_batch.prompts[0]}

    def write_checkpoint(self, folder: Path) -> None:
        """Hugging Face files (`save_pretrained` of model and tokenizer; with LoRA the adapter alone,
        peft's adapter_config.json + adapter_model.safetensors, whose base is `cfg.model`) + `llm_config.json`."""
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
                "ref_model": None if self.ref_model is None else self.ref_model.state_dict(),
                "grad_scaler": None if self.grad_scaler is None else self.grad_scaler.state_dict(),
                "iteration": self.iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ref_model is not None and state.get("ref_model") is not None:
            self.ref_model.load_state_dict(state["ref_model"])
        if self.grad_scaler is not None and state.get("grad_scaler") is not None:
            self.grad_scaler.load_state_dict(state["grad_scaler"])
        self.iteration = state.get("iteration", 0)
        if self.world.is_main and self.completions_file.exists():
            # rows logged after the checkpoint by a run that then crashed are logged again: drop the old ones
            rows = self.completions_file.read_text().splitlines(keepends=True)
            self.completions_file.write_text("".join(r for r in rows if json.loads(r)["iteration"] <= self.iteration))

    def rank_state_dict(self) -> dict[str, Any]:
        return {"task": self.task.state_dict(), "generator": self.generator.get_state()}

    def load_rank_state_dict(self, state: dict[str, Any]) -> None:
        self.task.load_state_dict(state["task"])
        self.generator.set_state(state["generator"])

    def summary(self, global_step: int, elapsed: float) -> dict[str, Any]:
        return {"model_parameters": self.agent.num_parameters()}


def train_llm(cfg: LLMConfig) -> dict[str, Any]:
    """Run (or resume) an LLM-agent GRPO run; returns the last evaluation, the per-iteration
    history of the main figures (`LLMTrainer.history_tags`) and timings. With `cfg.merge`, the
    checkpoint's LoRA adapter is then merged into its base and written there as a full model."""
    result = run_training(LLMTrainer, cfg)
    if cfg.merge and distributed.world_from_env().is_main:
        result["merged"] = str(merge_checkpoint(cfg, Path(result["run_dir"]) / CHECKPOINT_DIR, Path(cfg.merge)))
    return result


def merge_checkpoint(cfg: LLMConfig, checkpoint: Path, out: Path) -> Path:
    """Write the LoRA checkpoint's adapter merged into its base (peft's ``merge_and_unload``, as
    TRL users do before serving) to `out`: a plain Hugging Face model and tokenizer, float32, that
    `--model`, `from_pretrained` and tools without peft load."""
    saved = LLMTrainer.saved_config(checkpoint)  # the run's own settings (lora_r, model, tiny sizes, seed)
    names = {f.name for f in dataclasses.fields(cfg)} & set(saved)
    cfg = dataclasses.replace(cfg, **{k: tuple(saved[k]) if isinstance(saved[k], list) else saved[k] for k in names})
    agent = load_agent(cfg, torch.device("cpu"), checkpoint)
    agent.merge_lora()
    agent.save(out)
    return out
