"""Tasks of the LLM trainer: prompts drawn from real soccer matches, and the reward of an answer.

Both tasks draw their prompts from states of matches that scripted bots (or a trained soccer
policy; with ``--state-source self`` the LLM itself in its seats, `MatchSource.let_llm_play`)
play in a `SoccerVecEnv`; the matches advance `stride` steps between two draws, and each
prompt shows one player's observation (either team: observations are mirrored). With `balance`
(the default) the (match, player) pairs are drawn with weights 1 / frequency of the direction
of the ball from the player (8 compass sectors, or within reach), so every direction is about
equally likely: in real play the ball is east of most players most of the time, and a policy
answering "east" to everything would otherwise score twice chance without reading the prompt.

- ``soccer`` (the decision task): the answer is an action. Each prompt's state is copied with
  `SoccerVecEnv.branch` into G + 10 matches: copy g plays the action of completion g, and copy
  G + a plays action a, so every prompt also gets the return of all 10 actions (the *action
  table*). In every copy the LLM's player **holds** its action for `horizon` steps (one held
  decision matters more than a single step would, and needs no second policy for the later
  steps) while bots play everyone else. The return is that player's summed env reward over
  the H steps (the env's named components with the task's weights), cut after a goal or the
  end of the match (a kickoff says nothing about the decision). It is scored against the
  action table of its own state::

      reward = clip((R - mean_a R_a) / (max_a R_a - mean_a R_a), 0, 1)

  i.e. the share of the best action's gain over the average action that the answer achieved:
  1 for the best action, 0 for an action no better than a random one. A uniformly random
  valid answer then scores ``mean_a reward(a)`` (*chance*, about 0.25, logged per batch), the
  best one 1. A state where every action gives the same return scores 0 (no signal).
- ``direction`` (text-only and verifiable): "which direction is the ball", from the ball's
  rounded offset; exact match of the compass word gives 1, anything else 0 (DeepSeekMath's
  outcome reward, Shao et al. 2024, sec. 4.1.2). Chance is 1/9.

**A team of LLM players** (`--llm-players blue_0,blue_1`, `all-blue`): each drawn match state
then prompts every listed player, each with its own observation and its own G completions. In
copy g of the soccer task every listed player holds the action of its own completion g, and bots
play the rest; each player is scored by its own H-step return against its own action table,
whose copies put the bot in every other seat (see `SoccerTask.returns`). Individual rewards on
one scale are what make a baseline pooled over teammates meaningful (the trainer's `group_mode`
``branch+team``, as in soccer): with a shared team return the teammates of a copy would all get
the same reward. Without `--llm-players`, one player per state is drawn as above.

A malformed answer plays ``stay`` in the simulation; the trainer subtracts its format penalty.
The reward has two components, the answer's score and the format term (`reward_components`), so
``--reward-aggregation normalize_then_sum`` normalises each within its group before the sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from marl_grpo.agents import Bot, SoccerPolicy, direction_to_action, make_bot
from marl_grpo.agents.llm_text import (
    ACTION_WORDS,
    DIRECTION_ANSWERS,
    parse_answers,
    render_direction,
    render_soccer,
)
from marl_grpo.envs import NUM_ACTIONS, SoccerConfig, SoccerVecEnv

if TYPE_CHECKING:
    from marl_grpo.agents.llm_player import LLMPlayer

TASKS = ("soccer", "direction")

LLM_TEAMS = {"all-blue": "blue", "all-red": "red"}
"""`--llm-players` keywords: every player of one team"""


def llm_player_indices(spec: str, config: SoccerConfig) -> tuple[int, ...] | None:
    """The agent indices (sorted) that `--llm-players` names in matches of `config`.

    `spec` is empty (None: one player per prompt, drawn from either team), a keyword of
    `LLM_TEAMS`, or comma-separated agent names such as ``blue_0,blue_1``. Raises a `ValueError`
    listing the allowed names for a name that is not a player of these matches, or a repeated one.
    """
    spec = spec.strip()
    if not spec:
        return None
    agents = config.agents
    if spec in LLM_TEAMS:
        names = [a for a in agents if a.startswith(LLM_TEAMS[spec] + "_")]
    else:
        names = [name.strip() for name in spec.split(",")]
    if not names or any(n not in agents for n in names) or len(set(names)) != len(names):
        raise ValueError(f"llm_players={spec!r} is invalid: expected distinct comma-separated players of these "
                         f"{config.n_blue}v{config.n_red} matches, from {', '.join(agents)}, or one of "
                         f"{', '.join(LLM_TEAMS)} (empty: one player per prompt, drawn)")
    return tuple(sorted(agents.index(n) for n in names))


@dataclass
class PromptBatch:
    """P prompts and what scoring their answers needs.

    With K LLM players (`num_players`, `--llm-players`) the prompts come K at a time from one match
    state: prompt p = m * K + k shows player k of state m, and `slots` repeats each state's match.
    """

    prompts: list[str]  # [P]
    slots: torch.Tensor  # [P] int64: the match each prompt's state comes from
    players: torch.Tensor  # [P] int64: the player whose observation the prompt shows
    truth: torch.Tensor | None = None  # [P] int64: the right answer (verifiable tasks)
    num_players: int = 1  # K: consecutive prompts that share one match state


class MatchSource:
    """`num_envs` matches played by bots (or a soccer policy; with `let_llm_play`, the LLM in its
    seats), advanced `stride` steps per draw.

    Args:
        num_envs: matches in the pool.
        stride: steps played between two draws.
        env_kwargs: `SoccerConfig` fields (team sizes, reward weights, ...).
        bot, bot_strength: the scripted bot that plays every player of the pool.
        policy: a trained soccer policy playing instead of the bot (None: the bot).
        seed: seeds the matches, the bots and the draws.
        balance: draw (match, player) pairs evenly over the direction of the ball (see above).
    """

    def __init__(self, num_envs: int, stride: int, env_kwargs: dict[str, Any], bot: str = "team",
                 bot_strength: float = 1.0, policy: SoccerPolicy | None = None, seed: int = 0, device: Any = "cpu",
                 balance: bool = True):
        self.env = SoccerVecEnv(num_envs=num_envs, device=device, **env_kwargs)
        self.config, self.stride, self.policy, self.balance = self.env.config, stride, policy, balance
        self.bot = make_bot(bot, self.config, strength=bot_strength, seed=seed, device=device)
        self.branch_bot = make_bot(bot, self.config, strength=bot_strength, seed=seed + 1, device=device)
        self.generator = torch.Generator(device=self.env.device).manual_seed(seed)
        self.obs = self.env.reset(seed=seed)
        self.player: LLMPlayer | None = None
        self.llm_seats: torch.Tensor | None = None

    def let_llm_play(self, player: LLMPlayer, seats: tuple[int, ...]) -> None:
        """`--state-source self`: from now on `player` plays the columns `seats` of every pool match
        in `advance` (one batched generation over the pool every `player.decide_every` steps). The
        branched copies of `SoccerTask.returns` keep the bots for everyone but the prompted players."""
        self.player, self.llm_seats = player, torch.tensor(seats, device=self.env.device)

    def others(self, obs: torch.Tensor, bot: Bot) -> torch.Tensor:
        """Actions of every player, int64 [B, N], from the soccer policy or the bot."""
        if self.policy is not None:
            return self.policy.act(obs, generator=self.generator)[0]
        return bot.act(obs)

    def advance(self) -> None:
        for _ in range(self.stride):
            actions = self.others(self.obs, self.bot)
            if self.player is not None:
                actions[:, self.llm_seats] = self.player.act(self.obs[:, self.llm_seats])
            self.obs = self.env.step(actions)[0]

    def pick(self, num_prompts: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`num_prompts` distinct (match, player) pairs: (slots [P], players [P]).

        Without `balance`, distinct matches and a uniformly random player in each; with it, pairs
        weighted by 1 / frequency of their ball-direction class (a match may then give two prompts).
        """
        g, B, N = self.generator, self.env.num_envs, self.env.num_agents
        if num_prompts > B * N or (not self.balance and num_prompts > B):
            raise ValueError(f"cannot draw {num_prompts} prompts from {B} matches of {N} players")
        if not self.balance:
            slots = torch.randperm(B, generator=g, device=g.device)[:num_prompts]
            players = torch.randint(N, (num_prompts,), generator=g, device=g.device)
            return slots, players
        weights = self._balance_weights(self.obs).reshape(-1)
        flat = torch.multinomial(weights.to(g.device), num_prompts, replacement=False, generator=g)
        return flat // N, flat % N

    def _balance_weights(self, obs: torch.Tensor) -> torch.Tensor:
        """[B, K] weight of each (match, player) of `obs` [B, K, D]: 1 / frequency among them of its
        ball-direction class (0 = ball in reach, 1..8 = compass sector of the ball)."""
        layout = self.config.obs_layout()
        near = obs[..., layout["ball_in_reach"]][..., 0] > 0.5
        classes = torch.where(near, 0, direction_to_action(obs[..., layout["ball_rel"]]))
        return 1.0 / torch.bincount(classes.reshape(-1), minlength=9).float()[classes]

    def pick_states(self, num_states: int, players: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """`num_states` distinct matches, each giving a prompt to every one of `players` (K agent
        indices): (slots [M * K], players [M * K]), state-major.

        Without `balance`, uniformly random matches; with it, each match weighted by the mean over
        `players` of `pick`'s pair weight (1 / frequency of the ball-direction class among the pairs
        of these players), so states where the listed players see a rare direction come up more.
        """
        g, B, K = self.generator, self.env.num_envs, len(players)
        if num_states > B:
            raise ValueError(f"cannot draw {num_states} match states from {B} matches")
        seats = torch.tensor(players, device=self.obs.device)
        if not self.balance:
            slots = torch.randperm(B, generator=g, device=g.device)[:num_states]
        else:
            weights = self._balance_weights(self.obs[:, seats]).mean(1)
            slots = torch.multinomial(weights.to(g.device), num_states, replacement=False, generator=g)
        return slots.repeat_interleave(K), seats.to(slots.device).repeat(num_states)

    def state_dict(self) -> dict[str, Any]:
        state = {"env": self.env.get_state(), "generator": self.generator.get_state(),
                 "bot": self.bot.generator.get_state(), "branch_bot": self.branch_bot.generator.get_state()}
        if self.player is not None:  # mid-hold answers and the sampling stream, for exact resume
            state["player"] = {"step": self.player.step, "held": self.player.held,
                               "generator": self.player.generator.get_state()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.obs = self.env.set_state({k: v.to(self.env.device) for k, v in state["env"].items()})
        self.generator.set_state(state["generator"])
        self.bot.generator.set_state(state["bot"])
        self.branch_bot.generator.set_state(state["branch_bot"])
        if self.player is not None and "player" in state:
            held = state["player"]["held"]
            self.player.step, self.player.held = state["player"]["step"], None if held is None else held.to(
                self.env.device)
            self.player.generator.set_state(state["player"]["generator"])


class _MatchTask:
    """What both tasks share: a `MatchSource` to draw prompt states from, and its checkpoint state."""

    source: MatchSource
    num_prompts: int
    """match states per batch (one prompt each, or K with `llm_players`)"""
    llm_players: tuple[int, ...] | None = None
    """the K agent indices that every state prompts (`llm_player_indices`); None: one drawn player"""

    @property
    def num_players(self) -> int:
        """K: prompts per match state."""
        return 1 if self.llm_players is None else len(self.llm_players)

    def _next_states(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance the matches and pick the prompts' players: (observations [P, D], slots [P], players [P]),
        P = `num_prompts` x K."""
        src = self.source
        src.advance()
        if self.llm_players is None:
            slots, players = src.pick(self.num_prompts)
        else:
            slots, players = src.pick_states(self.num_prompts, self.llm_players)
        return src.obs[slots, players], slots, players

    def team_group_ids(self, batch: PromptBatch, group_size: int) -> torch.Tensor:
        """[P * G] group id of each completion (G per prompt, contiguous) for the `branch+team` group
        mode: the completions of every LLM teammate of one match state, (state, team), as soccer's
        `Groups.group_ids` pools teammates (`marl_grpo.rl.groups`)."""
        state = torch.arange(len(batch.prompts)) // batch.num_players
        team = (batch.players.cpu() >= self.source.config.n_blue).long()
        return (state * 2 + team).repeat_interleave(group_size)

    def state_dict(self) -> dict[str, Any]:
        return self.source.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.source.load_state_dict(state)


class SoccerTask(_MatchTask):
    """The decision task (see the module docstring). `group_size` = 0 scores the action table only."""

    name = "soccer"
    answers = ACTION_WORDS

    def __init__(self, num_prompts: int, group_size: int, horizon: int, stride: int, env_kwargs: dict[str, Any],
                 bot: str = "team", bot_strength: float = 1.0, policy: SoccerPolicy | None = None, seed: int = 0,
                 device: Any = "cpu", balance: bool = True, llm_players: tuple[int, ...] | None = None):
        self.num_prompts, self.group_size, self.horizon = num_prompts, group_size, horizon
        self.llm_players = llm_players
        self.copies = group_size + self.num_players * NUM_ACTIONS
        self.source = MatchSource(num_prompts * self.copies, stride, env_kwargs, bot, bot_strength, policy, seed,
                                  device, balance)

    def draw(self) -> PromptBatch:
        obs, slots, players = self._next_states()
        return PromptBatch(render_soccer(obs, self.source.config), slots, players, num_players=self.num_players)

    @torch.no_grad()
    def returns(self, batch: PromptBatch, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """H-step returns of the prompts' players: (of `actions` int64 [P, G], of every action [P, A]).

        The P = M x K prompts are K LLM players of M match states (one drawn player per state
        without `llm_players`). Each state's match is branched into G + K * A copies
        (`SoccerVecEnv.branch`): in copy g *every* LLM player holds the action of its own
        completion g; in table copy (k, a) player k holds action a and the bot plays everyone else,
        the other LLM players included, so a player's action table is the one it would have alone
        among bots (the reward scale of the one-player task, independent of the sampled
        teammates). The copies are played H steps, then the pool is restored (`get_state` /
        `set_state`), so the source matches go on as if nothing happened. Each player's return is
        its own reward, as in the one-player task.
        """
        src, env = self.source, self.source.env
        K, G, A = self.num_players, self.group_size, NUM_ACTIONS
        M, copies = self.num_prompts, self.copies
        device = env.device
        # held[m, c, k]: the action player k of state m holds in copy c; -1 leaves the seat to the bot
        held = torch.full((M, copies, K), -1, dtype=torch.long, device=device)
        held[:, :G] = actions.to(device).reshape(M, K, G).transpose(1, 2)
        for k in range(K):
            held[:, G + k * A: G + (k + 1) * A, k] = torch.arange(A, device=device)
        held = held.reshape(M * copies, K)
        seats = batch.players.to(device).reshape(M, K).repeat_interleave(copies, 0)  # [M * copies, K]
        rows = torch.arange(M * copies, device=device)[:, None]
        snapshot = env.get_state()
        obs = env.branch(batch.slots.reshape(M, K)[:, 0], copies)
        src.branch_bot.reset()
        score = env.score()
        total = torch.zeros(M * copies, K, device=device)
        alive = torch.ones(M * copies, dtype=torch.bool, device=device)
        for _ in range(self.horizon):
            full = src.others(obs, src.branch_bot)
            full[rows, seats] = torch.where(held >= 0, held, full[rows, seats])
            obs, rewards, terminated, truncated, infos = env.step(full)
            total += torch.where(alive[:, None], rewards[rows, seats], 0.0)
            alive &= ~(terminated | truncated) & (infos["score"] == score).all(-1)
        src.obs = env.set_state(snapshot)
        total = total.reshape(M, copies, K)
        table = torch.stack([total[:, G + k * A: G + (k + 1) * A, k] for k in range(K)], 1)  # [M, K, A]
        return total[:, :G].transpose(1, 2).reshape(M * K, G), table.reshape(M * K, A)

    def score(self, batch: PromptBatch, index: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Task rewards in [0, 1] of the answers `index` [P, G] (invalid ones play stay) and the
        action table [P, A] on the same scale."""
        played = torch.where(valid, index, torch.zeros_like(index))
        returns, table = self.returns(batch, played)
        mean, best = table.mean(1, keepdim=True), table.max(1, keepdim=True).values
        gap = best - mean
        informative = gap > 1e-6

        def scale(x: torch.Tensor) -> torch.Tensor:
            return torch.where(informative, ((x - mean) / gap.clamp(min=1e-6)).clamp(0.0, 1.0), torch.zeros_like(x))

        return scale(returns), scale(table)


class DirectionTask(_MatchTask):
    """Which compass direction is the ball (see the module docstring); exact-match 0/1 reward."""

    name = "direction"
    answers = DIRECTION_ANSWERS

    def __init__(self, num_prompts: int, group_size: int, stride: int, env_kwargs: dict[str, Any], bot: str = "team",
                 bot_strength: float = 1.0, policy: SoccerPolicy | None = None, seed: int = 0, device: Any = "cpu",
                 balance: bool = True, llm_players: tuple[int, ...] | None = None):
        self.num_prompts, self.group_size, self.llm_players = num_prompts, group_size, llm_players
        self.source = MatchSource(num_prompts, stride, env_kwargs, bot, bot_strength, policy, seed, device, balance)

    def draw(self) -> PromptBatch:
        obs, slots, players = self._next_states()
        prompts, answers = render_direction(obs, self.source.config)
        truth = torch.tensor([self.answers.index(a) for a in answers], dtype=torch.long)
        return PromptBatch(prompts, slots, players, truth, num_players=self.num_players)

    def score(self, batch: PromptBatch, index: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """0/1 rewards [P, G] of the answers `index` and the answer table [P, A] (one-hot truth)."""
        truth = batch.truth.to(index.device)
        rewards = ((index == truth[:, None]) & valid).float()
        table = torch.nn.functional.one_hot(truth, len(self.answers)).float()
        return rewards, table


REWARD_COMPONENTS = ("answer", "format")
"""The components of a completion's reward (TRL's reward functions): the task's score of the answer,
and -1 for a malformed answer, weighted 1 and `format_penalty` (`reward_components`)."""


def reward_components(task_rewards: torch.Tensor, valid: torch.Tensor,
                      format_penalty: float) -> tuple[torch.Tensor, list[float]]:
    """The reward of `answer_rewards` split into `REWARD_COMPONENTS`: `(components [S, F], weights [F])`.

    `(components * weights).sum(-1)` is the reward (bit for bit), so `sum_then_normalize` gives the
    same advantages as the summed reward; `normalize_then_sum` (GDPO) normalises the answer score
    and the format term each within its group first, so that neither drowns the other.
    """
    return torch.stack([task_rewards, -(~valid).to(task_rewards.dtype)], -1), [1.0, format_penalty]


def answer_rewards(task: SoccerTask | DirectionTask, batch: PromptBatch, texts: list[str], group_size: int,
                   format_penalty: float,
                   answer_format: str = "word") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Parse (under `answer_format`, `llm_text.ANSWER_FORMATS`) and score the completions of a
    batch (G per prompt, contiguous).

    Returns `(rewards [P * G], task_rewards [P * G], valid [P * G], table [P, A])`: the reward is the
    task reward minus `format_penalty` for a malformed answer (whose task reward is that of
    stay in the soccer task, 0 in the direction task).
    """
    index, valid = parse_answers(texts, task.answers, answer_format)
    P = len(batch.prompts)
    task_rewards, table = task.score(batch, index.view(P, group_size), valid.view(P, group_size))
    task_rewards, table = task_rewards.reshape(-1).cpu(), table.cpu()
    return task_rewards - format_penalty * (~valid).float(), task_rewards, valid, table


__all__ = ["LLM_TEAMS", "REWARD_COMPONENTS", "TASKS", "DirectionTask", "MatchSource", "PromptBatch", "SoccerTask",
           "answer_rewards", "llm_player_indices", "reward_components"]
