"""The LLM-agent trainer: a causal LM answers text prompts of soccer states and learns by GRPO.

    marl-grpo llm --preset tiny                        # tiny Llama from scratch on CPU: runs/llm-tiny/
    marl-grpo llm --preset tiny --task direction       # the text-only verifiable task
    marl-grpo llm --preset gpu --model PATH --bf16     # a local Hugging Face model on a GPU

One iteration reads top to bottom:

1. **prompts**: P soccer states drawn from bot matches, rendered as text (`marl_grpo.llm_tasks`);
2. **generation**: G sampled completions per prompt (temperature, top-p), batched;
3. **rewards**: each completion is parsed strictly; its action is played forward H steps in a
   branched copy of the state, or checked against the truth; a malformed answer gets
   ``-format_penalty`` on top;
4. **advantages**: `marl_grpo.advantages.group_advantages` over each prompt's G completions
   (DeepSeekMath's GRPO, Shao et al. 2024, eq. 3);
5. **update**: old (and reference) per-token log-probs are computed once, then `num_iterations`
   epochs of the shared loss core `marl_grpo.losses.policy_loss` (``loss_type`` grpo / bnpo /
   dr_grpo / dapo, ``ratio_level`` token or sequence = GSPO, clip-higher, k3 KL), as TRL's
   `GRPOTrainer` does;
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
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from marl_grpo.advantages import SCALES, group_advantages, group_stats
from marl_grpo.agents import BOT_NAMES
from marl_grpo.checkpoint import atomic_directory
from marl_grpo.config import pick_preset
from marl_grpo.envs.backend import resolve_device
from marl_grpo.envs.config import MAX_TEAM_SIZE
from marl_grpo.learner import LOSS_TAGS
from marl_grpo.llm_tasks import TASKS, DirectionTask, PromptBatch, SoccerTask
from marl_grpo.logger import Logger
from marl_grpo.losses import LOSS_TYPES, RATIO_LEVELS, policy_loss

CHECKPOINT_DIR = "checkpoint"
STATE_FILE, CONFIG_FILE = "trainer_state.pt", "llm_config.json"



@dataclass
class LLMConfig:
    """Hyperparameters of an LLM-agent GRPO run (TRL `GRPOConfig` names where they exist)."""

    # ------------------------------------------------------------------ run
    name: str = "llm"
    """run name: logs and checkpoints go to `<log_dir>/<name>/`"""
    log_dir: str = "runs"
    """parent folder of run folders"""
    seed: int = 1
    """seed of the matches, the model initialisation and the sampling"""
    device: str = "auto"
    """torch device: auto (CUDA when present), cpu or cuda"""
    threads: int = 2
    """torch CPU threads"""
    bf16: bool = False
    """run the model's forward passes in bfloat16 autocast (CUDA only; weights and optimiser stay float32)"""
    resume: bool = False
    """continue from `<log_dir>/<name>/checkpoint` instead of starting afresh"""

    # ------------------------------------------------------------------ model
    model: str = ""
    """local folder of a Hugging Face causal LM and its tokenizer (never downloaded); empty = build the
    tiny Llama-style model and word-level tokenizer in-process, from scratch"""
    tiny_hidden: int = 64
    """hidden size of the tiny model (when `model` is empty)"""
    tiny_layers: int = 4
    """transformer layers of the tiny model"""
    tiny_heads: int = 4
    """attention heads of the tiny model"""
    tiny_intermediate: int = 192
    """MLP width of the tiny model"""

    # ------------------------------------------------------------------ task
    task: str = "soccer"
    """soccer: answer an action, rewarded by its H-step return in a branched copy of the match;
    direction: say which compass direction the ball is (exact match, 0/1)"""
    team_size: int = 2
    """players per team of the matches prompts come from"""
    max_cycles: int = 300
    """match length in steps"""
    bot: str = "team"
    """scripted bot playing every other player: random, chaser or team"""
    bot_strength: float = 1.0
    """strength in [0, 1] of the bots (1 = deterministic play)"""
    others_checkpoint: str = ""
    """soccer policy checkpoint (runs/<name>/checkpoint) that plays the others instead of the bots"""
    stride: int = 8
    """steps the source matches advance between two prompt batches"""
    balance: bool = True
    """draw prompt states evenly over the direction of the ball from the player (weights 1 / frequency),
    so that no single answer is right for most prompts (in real play the ball is mostly east)"""
    horizon: int = 4
    """H: steps the LLM's player holds its action in each branch (soccer task)"""
    reward_goal: float = 1.0
    """weight of the goal component in the H-step return (soccer task)"""
    reward_ball_touch: float = 0.0
    """weight of the ball-touch component (touching alone is not worth anything here)"""
    reward_ball_progress: float = 1.0
    """weight of the ball-progress component (ball moved towards the goal by the last toucher)"""
    reward_shot_on_target: float = 0.2
    """weight of the shot-on-target component"""
    reward_dist_to_ball: float = 0.1
    """weight of the distance-to-ball component (makes running to the ball pay off far from it)"""
    format_penalty: float = 1.0
    """subtracted from the reward of a malformed answer (which plays stay)"""

    # ------------------------------------------------------------------ generation
    prompts_per_step: int = 16
    """P: prompts per iteration"""
    group_size: int = 8
    """G: completions sampled per prompt, the GRPO group (>= 2)"""
    max_new_tokens: int = 4
    """longest completion; the answer is one word then EOS (with 1: just the word, the completion is cut after it)"""
    temperature: float = 1.0
    """sampling temperature (the log-probs are computed at the same temperature, as TRL)"""
    top_p: float = 1.0
    """nucleus sampling threshold in (0, 1]"""

    # ------------------------------------------------------------------ optimisation
    total_steps: int = 200
    """iterations (one prompt batch each)"""
    max_minutes: float = 0.0
    """stop after this much wall time (evaluation included), 0 = no limit"""
    learning_rate: float = 3e-3
    """AdamW learning rate"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    max_grad_norm: float = 1.0
    """gradient clipping norm"""
    num_iterations: int = 1
    """epochs over each batch (TRL's num_iterations, GRPO's mu); old log-probs are computed once before them"""
    num_minibatches: int = 1
    """minibatches per epoch, split by prompt groups (must divide prompts_per_step)"""
    loss_type: str = "grpo"
    """aggregation of the per-token loss, as TRL: grpo, bnpo, dr_grpo, dapo"""
    ratio_level: str = "token"
    """importance ratio per token (PPO/GRPO) or per sequence (GSPO, Zheng et al. 2025)"""
    clip_eps: float = 0.2
    """lower clip of the ratio (PPO, Schulman et al. 2017)"""
    clip_eps_high: float | None = None
    """upper clip if different (DAPO's clip-higher, Yu et al. 2025); None = clip_eps"""
    scale: str = "group"
    """advantage scaling: group std (GRPO), batch std, or none (Dr. GRPO, Liu et al. 2025)"""
    kl_coef: float = 0.0
    """weight of the k3 KL to a frozen reference model (DeepSeekMath eq. 4); 0 = no reference model"""
    ent_coef: float = 0.0
    """weight of an entropy bonus on the completion tokens, added to `policy_loss`'s loss as the soccer
    learner does; keeps a model trained from scratch exploring instead of collapsing on one answer"""
    ref_refresh: int = 0
    """iterations between copies of the policy into the reference model (iterative GRPO); 0 = never"""

    # ------------------------------------------------------------------ evaluation and logging
    eval_every: int = 20
    """iterations between evaluations on the fixed held-out prompts (0 = only at the end)"""
    eval_prompts: int = 64
    """held-out prompts, drawn once from matches with their own seed"""
    save_every: int = 50
    """iterations between checkpoints (one is also written at the end)"""
    progress: bool = True
    """show a tqdm progress bar"""

    def validate(self) -> None:
        """Raise a clear error, naming the value and the allowed ones, for a bad setting."""
        choices = {"task": TASKS, "loss_type": LOSS_TYPES, "ratio_level": RATIO_LEVELS, "scale": SCALES,
                   "bot": BOT_NAMES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: expected one of {allowed}")
        if self.group_size < 2:
            raise ValueError(f"group_size={self.group_size!r} is invalid: a GRPO group needs at least 2 completions")
        for name in ("prompts_per_step", "max_new_tokens", "total_steps", "num_iterations", "num_minibatches",
                     "horizon", "eval_prompts", "threads", "stride", "max_cycles"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid: expected an int >= 1")
        if self.prompts_per_step % self.num_minibatches:
            raise ValueError(
                f"num_minibatches={self.num_minibatches} must divide prompts_per_step={self.prompts_per_step}")
        if not 1 <= self.team_size <= MAX_TEAM_SIZE:
            raise ValueError(f"team_size={self.team_size!r} is invalid: expected an int in [1, {MAX_TEAM_SIZE}]")
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature!r} is invalid: expected > 0")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p!r} is invalid: expected 0 < top_p <= 1")
        if not 0 <= self.bot_strength <= 1:
            raise ValueError(f"bot_strength={self.bot_strength!r} is invalid: expected a number in [0, 1]")
        for name in ("format_penalty", "kl_coef", "ent_coef", "learning_rate", "weight_decay", "max_minutes"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: expected >= 0")
        if not self.clip_eps > 0 or (self.clip_eps_high is not None and not self.clip_eps_high > 0):
            raise ValueError(f"clip_eps={self.clip_eps!r} and clip_eps_high={self.clip_eps_high!r} must be > 0")
        if self.eval_every < 0 or self.save_every < 0 or self.ref_refresh < 0:
            raise ValueError("eval_every, save_every and ref_refresh must be >= 0")

    def env_kwargs(self) -> dict[str, Any]:
        weights = {f"reward_{k}": getattr(self, f"reward_{k}")
                   for k in ("goal", "ball_touch", "ball_progress", "shot_on_target", "dist_to_ball")}
        return {"team_size": self.team_size, "max_cycles": self.max_cycles, **weights}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TINY = {"learning_rate": 1e-3, "ent_coef": 0.15, "max_new_tokens": 1, "total_steps": 2000, "max_minutes": 10.0}
"""from-scratch settings: one-token answers (the action word; EOS not required, the completion is cut
after it), an entropy bonus against collapsing onto one answer, and a high learning rate"""

PRESETS: dict[str, LLMConfig] = {
    # the tiny Llama-style model from scratch on CPU, soccer decisions (the README's example)
    "tiny": LLMConfig(name="llm-tiny", **_TINY),
    # the same model on the text-only verifiable task (exact match, 0/1)
    "tiny-direction": LLMConfig(name="llm-direction", task="direction", **_TINY),
    # the answer format "action word, then EOS" (max_new_tokens 4): slower and less reliable from scratch
    "tiny-eos": LLMConfig(name="llm-eos", **{**_TINY, "max_new_tokens": 4, "ent_coef": 0.05}),
    # GSPO (sequence-level ratio, Zheng et al. 2025) with DAPO's token-level loss and clip-higher, 2 epochs
    "tiny-gspo": LLMConfig(name="llm-gspo", ratio_level="sequence", loss_type="dapo", num_iterations=2,
                           clip_eps=3e-3, clip_eps_high=4e-3, **_TINY),
    # a pretrained local model on a GPU: pass --model PATH
    "gpu": LLMConfig(name="llm-gpu", device="cuda", bf16=True, prompts_per_step=32, group_size=8,
                     max_new_tokens=8, learning_rate=1e-6, kl_coef=0.04, top_p=0.95, total_steps=300,
                     eval_every=25),
    # the smallest real run, for tests
    "test": LLMConfig(name="llm-test", tiny_hidden=16, tiny_layers=1, tiny_heads=2, tiny_intermediate=32,
                      prompts_per_step=2, group_size=2, max_new_tokens=2, total_steps=2, eval_every=1,
                      eval_prompts=4, save_every=1, stride=2, threads=1, progress=False),
}


def preset(name: str) -> LLMConfig:
    return pick_preset(PRESETS, name)


# --------------------------------------------------------------------------- building blocks


def make_task(cfg: LLMConfig, num_prompts: int, group_size: int, seed: int, device: torch.device,
              stride: int | None = None):
    """The task of `cfg` (a `SoccerTask` or a `DirectionTask`) drawing `num_prompts` per batch."""
    policy = None
    if cfg.others_checkpoint:
        from marl_grpo.checkpoint import load_policy
        from marl_grpo.envs import SoccerConfig

        policy, _ = load_policy(cfg.others_checkpoint, device=device, env_config=SoccerConfig(**cfg.env_kwargs()))
    stride = cfg.stride if stride is None else stride
    common = {"env_kwargs": cfg.env_kwargs(), "bot": cfg.bot, "bot_strength": cfg.bot_strength, "policy": policy,
              "seed": seed, "device": device, "balance": cfg.balance}
    if cfg.task == "soccer":
        return SoccerTask(num_prompts, group_size, cfg.horizon, stride, **common)
    return DirectionTask(num_prompts, group_size, stride, **common)


EVAL_CHUNK = 8
"""held-out prompts are drawn this many at a time, spread over a whole match"""


def make_eval_set(cfg: LLMConfig, device: torch.device) -> tuple[Any, PromptBatch, torch.Tensor]:
    """The fixed held-out prompts and their answer table `[E, A]`: `eval_prompts` states from
    matches with their own seed, drawn `EVAL_CHUNK` at a time at times spread over a whole
    match (prompts drawn at one moment, e.g. all near a kickoff, would be too alike)."""
    chunk = min(EVAL_CHUNK, cfg.eval_prompts)
    chunks = -(-cfg.eval_prompts // chunk)
    task = make_task(cfg, chunk, 0, cfg.seed + 10_000, device, stride=max(1, cfg.max_cycles // chunks))
    empty = torch.zeros(chunk, 0, dtype=torch.long, device=device)
    batches, tables = [], []
    for _ in range(chunks):
        batches.append(task.draw())
        tables.append(task.score(batches[-1], empty, empty.bool())[1].cpu())
    truth = None if batches[0].truth is None else torch.cat([b.truth for b in batches])
    merged = PromptBatch([p for b in batches for p in b.prompts], torch.cat([b.slots for b in batches]),
                         torch.cat([b.players for b in batches]), truth)
    keep = cfg.eval_prompts
    return task, PromptBatch(merged.prompts[:keep], merged.slots[:keep], merged.players[:keep],
                             None if truth is None else truth[:keep]), torch.cat(tables)[:keep]


def load_agent(cfg: LLMConfig, device: torch.device, path: str | Path | None = None):
    """The agent to train: from `path` (a checkpoint), `cfg.model`, or a fresh tiny model."""
    from marl_grpo.agents.llm import LLMAgent

    path = path or cfg.model
    if path:
        return LLMAgent.from_pretrained(path, device=device)
    return LLMAgent.tiny(seed=cfg.seed, device=device, hidden_size=cfg.tiny_hidden, num_layers=cfg.tiny_layers,
                         num_heads=cfg.tiny_heads, intermediate_size=cfg.tiny_intermediate)


def answer_rewards(task, batch: PromptBatch, texts: list[str], group_size: int,
                   format_penalty: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Parse and score the completions of a batch (G per prompt, contiguous).

    Returns `(rewards [P*G], task_rewards [P*G], valid [P*G], table [P, A])`: the reward is the
    task reward minus `format_penalty` for a malformed answer (whose task reward is that of
    stay in the soccer task, 0 in the direction task).
    """
    from marl_grpo.agents.llm_text import parse_answers

    index, valid = parse_answers(texts, task.answers)
    P = len(batch.prompts)
    task_rewards, table = task.score(batch, index.view(P, group_size), valid.view(P, group_size))
    task_rewards, table = task_rewards.reshape(-1).cpu(), table.cpu()
    return task_rewards - format_penalty * (~valid).float(), task_rewards, valid, table


@torch.no_grad()
def evaluate_llm(agent, cfg: LLMConfig, batch: PromptBatch, table: torch.Tensor, answers: tuple[str, ...],
                 generator: torch.Generator) -> dict[str, float]:
    """Greedy and sampled answers to the fixed held-out prompts, scored with their answer table
    (a malformed answer scores 0): `eval/reward_*`, `eval/invalid_frac_*`, and the baselines: the
    reward of a uniformly random valid answer (`eval/reward_chance`), of the best single answer
    given to every prompt (`eval/reward_best_constant`) and of the best answer (`eval/reward_oracle`)."""
    from marl_grpo.agents.llm_text import parse_answers

    out = {"eval/reward_chance": float(table.mean(1).mean()), "eval/reward_oracle": float(table.max(1).values.mean()),
           "eval/reward_best_constant": float(table.mean(0).max())}
    for mode in ("greedy", "sampled"):
        with _autocast(cfg, agent.device):
            done = agent.generate(batch.prompts, 1, temperature=cfg.temperature, top_p=cfg.top_p,
                                  max_new_tokens=cfg.max_new_tokens, greedy=mode == "greedy", generator=generator)
        index, valid = parse_answers(done.texts, answers)
        scores = torch.where(valid, table.gather(1, index[:, None])[:, 0], torch.zeros(len(index)))
        out[f"eval/reward_{mode}"] = float(scores.mean())
        out[f"eval/invalid_frac_{mode}"] = float((~valid).float().mean())
    return out


def _autocast(cfg: LLMConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)


# --------------------------------------------------------------------------- training


def train_llm(cfg: LLMConfig) -> dict[str, Any]:
    """Run (or resume) an LLM-agent GRPO run; returns the last evaluation, the per-iteration
    history of the main figures and timings."""
    cfg.validate()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    if cfg.bf16 and device.type != "cuda":
        raise ValueError(f"bf16=True is for CUDA devices, but the device is {device}; drop --bf16 or use a GPU")
    run_dir = Path(cfg.log_dir) / cfg.name
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if not cfg.resume and ckpt_dir.exists():
        raise FileExistsError(
            f"{str(run_dir)!r} already holds a run: pass --resume to continue it, or choose another --name")
    if cfg.resume and not ckpt_dir.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {str(ckpt_dir)!r} to continue from")

    agent = load_agent(cfg, device, ckpt_dir if cfg.resume else None)
    agent.model.generation_config.max_new_tokens = cfg.max_new_tokens  # saved with the model, read by `act`
    model, P, G = agent.model, cfg.prompts_per_step, cfg.group_size
    ref_model = copy.deepcopy(model).eval().requires_grad_(False) if cfg.kl_coef > 0 else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    task = make_task(cfg, P, G, cfg.seed, device)
    eval_task, eval_batch, eval_table = make_eval_set(cfg, device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    eval_generator = torch.Generator(device=device)
    step, elapsed, wall_before = 0, 0.0, 0.0
    if cfg.resume:
        state = torch.load(ckpt_dir / STATE_FILE, map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        if ref_model is not None and state.get("ref_model") is not None:
            ref_model.load_state_dict(state["ref_model"])
        task.load_state_dict(state["task"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step, elapsed, wall_before = state["step"], state["elapsed"], state["wall_time"]

    logger = Logger(run_dir)
    if not cfg.resume:
        logger.hyperparameters({**cfg.to_dict(), "model_parameters": agent.num_parameters()})
        logger.text("example_prompt", eval_batch.prompts[0])
    history: dict[str, list[float]] = {k: [] for k in ("llm/reward_mean", "llm/answer_reward", "llm/reward_chance",
                                                        "llm/invalid_frac")}
    last_eval: dict[str, float] = {}
    steps_done = step
    wall_start = time.perf_counter()
    bar = tqdm(range(step, cfg.total_steps), initial=step, total=cfg.total_steps, disable=not cfg.progress,
               desc=cfg.name, unit="it")
    try:
        for step in bar:
            start = time.perf_counter()
            if ref_model is not None and cfg.ref_refresh and step % cfg.ref_refresh == 0 and step > 0:
                ref_model.load_state_dict(model.state_dict())

            # ---- prompts and generation
            batch = task.draw()
            gen_start = time.perf_counter()
            with _autocast(cfg, device):
                completions = agent.generate(batch.prompts, G, temperature=cfg.temperature, top_p=cfg.top_p,
                                             max_new_tokens=cfg.max_new_tokens, generator=generator)
            gen_time = time.perf_counter() - gen_start

            # ---- rewards and advantages
            rewards, task_rewards, valid, table = answer_rewards(task, batch, completions.texts, G, cfg.format_penalty)
            advantages = group_advantages(rewards, group_size=G, scale=cfg.scale).to(device)  # [P*G]

            # ---- update
            loss_stats = _update(agent, ref_model, optimizer, completions, advantages, cfg, generator)

            # ---- log
            seconds = time.perf_counter() - start
            elapsed += seconds
            tokens = float(completions.prompt_mask.sum() + completions.completion_mask.sum())
            answer_reward = torch.where(valid, task_rewards, torch.zeros_like(task_rewards))
            scalars = {
                "llm/reward_mean": float(rewards.mean()),
                **{f"llm/{k}": float(v) for k, v in group_stats(rewards, group_size=G).items()},
                "llm/invalid_frac": float((~valid).float().mean()),
                "llm/answer_reward": float(answer_reward.mean()),
                "llm/reward_chance": float(table.mean(1).mean()),
                "llm/reward_oracle": float(table.max(1).values.mean()),
                "llm/completion_len": float(completions.lengths.float().mean()),
                "llm/tokens_per_s": tokens / seconds,
                "llm/gen_tokens_per_s": float(completions.completion_mask.sum()) / gen_time,
                "llm/learning_rate": optimizer.param_groups[0]["lr"],
                **loss_stats,
            }
            logger.scalars(scalars, step + 1)
            steps_done = step + 1
            for key, values in history.items():
                values.append(scalars[key])

            done = step + 1 == cfg.total_steps or (
                cfg.max_minutes > 0 and time.perf_counter() - wall_start + wall_before >= 60 * cfg.max_minutes)
            if (cfg.eval_every and (step + 1) % cfg.eval_every == 0) or done or step == 0:
                eval_generator.manual_seed(cfg.seed + 10_000)
                last_eval = evaluate_llm(agent, cfg, eval_batch, eval_table, eval_task.answers, eval_generator)
                last_eval["eval/wall_time"] = wall_before + time.perf_counter() - wall_start
                logger.scalars(last_eval, step + 1)
            if (cfg.save_every and (step + 1) % cfg.save_every == 0) or done:
                state = {"step": step + 1, "elapsed": elapsed,
                         "wall_time": wall_before + time.perf_counter() - wall_start,
                         "optimizer": optimizer.state_dict(), "task": task.state_dict(),
                         "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                         "ref_model": None if ref_model is None else ref_model.state_dict()}
                save_llm_checkpoint(ckpt_dir, agent, cfg, state)
            bar.set_postfix(reward=f"{scalars['llm/answer_reward']:.2f}", chance=f"{scalars['llm/reward_chance']:.2f}",
                            invalid=f"{scalars['llm/invalid_frac']:.2f}")
            if done:
                break
    finally:
        logger.close()
    return {"eval": last_eval, "step": steps_done, "elapsed": elapsed, "run_dir": str(run_dir),
            "wall_time": wall_before + time.perf_counter() - wall_start, "history": history,
            "model_parameters": agent.num_parameters()}


def _update(agent, ref_model, optimizer: torch.optim.Optimizer, completions, advantages: torch.Tensor,
            cfg: LLMConfig, generator: torch.Generator) -> dict[str, float]:
    """`num_iterations` epochs of `policy_loss` over the batch, in `num_minibatches` groups of prompts.

    Old log-probs come from one pass before the first epoch, as TRL's `GRPOTrainer` does; with a
    single epoch and minibatch they equal the current ones, so (as TRL) the detached current
    log-probs stand in for them and the ratio is exactly 1.
    """
    model, G = agent.model, cfg.group_size
    P = len(completions) // G
    device = agent.device
    need_old = cfg.num_iterations > 1 or cfg.num_minibatches > 1
    with torch.no_grad(), _autocast(cfg, device):
        old_logp = agent.completion_logps(completions, temperature=cfg.temperature) if need_old else None
        ref_logp = (agent.completion_logps(completions, model=ref_model, temperature=cfg.temperature)
                    if ref_model is not None else None)
    per_batch = P // cfg.num_minibatches
    totals: dict[str, float] = {}
    count = 0
    model.train()
    for _ in range(cfg.num_iterations):
        order = torch.randperm(P, generator=generator, device=generator.device).to(device)
        for start in range(0, P, per_batch):
            groups = order[start:start + per_batch]
            rows = completions.group_rows(groups)
            minibatch = completions.select_groups(groups)
            with _autocast(cfg, device):
                logp, entropy = agent.completion_logps(minibatch, temperature=cfg.temperature, with_entropy=True)
            loss, stats = policy_loss(
                logp, logp.detach() if old_logp is None else old_logp[rows], advantages[rows],
                minibatch.completion_mask, clip_eps=cfg.clip_eps, clip_eps_high=cfg.clip_eps_high,
                ratio_level=cfg.ratio_level, loss_type=cfg.loss_type, max_len=cfg.max_new_tokens,
                ref_logp=None if ref_logp is None else ref_logp[rows], kl_coef=cfg.kl_coef, kl_estimator="k3",
            )
            entropy = (entropy * minibatch.completion_mask).sum() / minibatch.completion_mask.sum().clamp(min=1)
            total = loss - cfg.ent_coef * entropy if cfg.ent_coef > 0 else loss
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            for key, value in {**stats, "entropy": entropy.detach(), "grad_norm": grad_norm,
                               "loss": total.detach()}.items():
                totals[key] = totals.get(key, 0.0) + float(value)
            count += 1
    return {LOSS_TAGS.get(k, f"losses/{k}"): v / count for k, v in totals.items()}


# --------------------------------------------------------------------------- checkpoints


def save_llm_checkpoint(path: Path, agent, cfg: LLMConfig, state: dict[str, Any]) -> Path:
    """Hugging Face files (`save_pretrained` of model and tokenizer) + `llm_config.json` +
    `trainer_state.pt`, written to a temporary sibling and renamed into place."""
    with atomic_directory(path) as tmp:
        agent.save(tmp)
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2))
        torch.save(state, tmp / STATE_FILE)
    return path


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    """`marl-grpo llm [--preset NAME] [options]`: parse, train, print a summary."""
    from marl_grpo.cli import parse_with_preset

    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse_with_preset(argv, PRESETS, "tiny", "marl-grpo llm", "GRPO training of an LLM agent.")
    try:
        result = train_llm(cfg)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        raise SystemExit(f"marl-grpo llm: {err}") from None
    history = result["history"]["llm/answer_reward"]
    if history:
        print(f"done: {result['step']} iterations in {result['wall_time']:.0f} s; answer reward "
              f"{history[0]:.3f} -> {history[-1]:.3f} (chance {result['history']['llm/reward_chance'][-1]:.3f}); "
              f"last evaluation: {result['eval']}")
    else:
        print(f"nothing to do: the run is already at iteration {result['step']} of {cfg.total_steps}")
    print(f"TensorBoard logs and Hugging Face checkpoint in {result['run_dir']}")


if __name__ == "__main__":
    main()
