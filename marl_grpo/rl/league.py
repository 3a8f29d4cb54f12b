"""The self-play league: who plays red in each match, the pool of past selves, and their ratings.

    marl-grpo train --opponent league                    # GRPO (or --algo ppo) against the league
    marl-grpo train --preset league-2v2                  # the tuned 15-minute run

The learner (the current policy) plays blue. At each segment's start, every match that has just
kicked off draws its red side, and keeps it until the match ends:

- with probability `league_latest_ratio`, the current policy itself (mirrored self-play: both
  sides are the learner, and both sides' play is trained on);
- otherwise a pool member: a frozen snapshot of the learner (one every `league_snapshot_every`
  iterations, at most `league_size` of them, the oldest dropped) or a scripted anchor
  (`league_anchors`). `league_sampling="pfsp"` weights member m by `(1 - p_m)^2`, p_m the
  learner's recent score against it (win 1, draw 1/2): AlphaStar's prioritised fictitious
  self-play, `f_hard` with p = 2 (Vinyals et al. 2019, "Grandmaster level in StarCraft II using
  multi-agent reinforcement learning", Methods). `uniform` draws members alike. With
  `league_anchor_ratio` the anchors get that share of the matches and the snapshots the rest
  (each drawn as above among its kind), so that a growing pool of snapshots does not crowd out
  the bots.

All copies of a GRPO group (a block of `group_size` matches in branch and episode mode) draw one
opponent together, so the group baseline compares like with like. Each anchor acts on its
matches in one batched call per step, and all MLP snapshots together in one more: their weights
are stacked and applied with batched matmuls over their matches, padded to the largest share.

Ratings: an online Elo (Elo 1978, "The Rating of Chessplayers, Past and Present"; the logistic
expectation `E = 1 / (1 + 10^((R_o - R_l) / 400))` of FIDE's rules) for the learner and every
member, all starting at 1200 (as ML-Agents' ghost trainer); a snapshot starts at the learner's
rating when it was taken. After each iteration its finished matches (of every rank, in match
order) update the ratings one match at a time: the learner gains `elo_k * (S - E)` and the member
loses as much. (One update from the ratings at the iteration's start would not do: the matches
of a batch tend to end together, a thousand at once, and their summed changes overshoot by far.)
Matches against the learner itself move no rating. The league's whole state
(pool weights, ratings, recent results, random stream) is in the checkpoint: `--resume` keeps it.

Under torchrun every rank draws the opponents of its own matches from its own stream (seeded by
rank), and the finished matches of every rank update the one shared rating table; such a run
is exact on resume but not bit-identical to a single-process run.
"""

from __future__ import annotations

import copy
import math
import shutil
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from marl_grpo.agents import BOT_NAMES, Bot, SoccerPolicy, make_bot, sample_actions
from marl_grpo.agents.checkpoint import write_policy
from marl_grpo.envs import SoccerVecEnv
from marl_grpo.run import distributed
from marl_grpo.run.checkpoint import atomic_directory

SAMPLINGS = ("uniform", "pfsp")
LATEST = -1
"""opponent id of the current policy (mirrored self-play)"""
INITIAL_ELO = 1200.0


def parse_anchors(spec: str) -> list[tuple[str, float]]:
    """`"team,chaser:0.5"` -> [("team", 1.0), ("chaser", 0.5)]: bot names with optional strengths."""
    anchors = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, strength = item.partition(":")
        if name not in BOT_NAMES:
            raise ValueError(f"league_anchors={spec!r} names an unknown bot {name!r}: expected names from "
                             f"{BOT_NAMES}, each optionally with a strength, e.g. 'team,chaser:0.5'")
        try:
            value = float(strength) if strength else 1.0
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"league_anchors={spec!r}: the strength of {name!r} must be a number in [0, 1], "
                             f"got {strength!r}")
        anchors.append((name, value))
    names = [f"{n}:{s:g}" for n, s in anchors]
    if len(set(names)) != len(names):
        raise ValueError(f"league_anchors={spec!r} names an anchor twice")
    return anchors


def expected_score(rating: float, opponent: float) -> float:
    """Elo's expected score of `rating` against `opponent` (logistic, 400-point scale)."""
    return 1.0 / (1.0 + 10.0 ** ((opponent - rating) / 400.0))


def pfsp_weights(scores: list[float | None], sampling: str) -> torch.Tensor:
    """Sampling weights of the members from the learner's recent mean score against each (None: no
    result yet, counted as 1/2). pfsp: `(1 - p)^2` (AlphaStar's f_hard); uniform when every
    weight is 0 (the learner beats every member every time) or with `sampling="uniform"`."""
    if sampling == "uniform" or not scores:
        return torch.ones(len(scores), dtype=torch.float64)
    p = torch.tensor([0.5 if s is None else s for s in scores], dtype=torch.float64)
    weights = (1.0 - p) ** 2
    return weights if float(weights.sum()) > 0 else torch.ones_like(weights)


@dataclass
class Member:
    """One pool member: a scripted anchor (`bot`) or a frozen policy (`policy`): a snapshot of the
    learner, or of a main exploiter (`marl_grpo.rl.exploiters`)."""

    name: str
    actor: Bot | SoccerPolicy
    iteration: int = -1
    """the iteration whose policy this snapshot is (-1: an anchor)"""
    strength: float = 1.0

    @property
    def is_snapshot(self) -> bool:
        return isinstance(self.actor, SoccerPolicy)


class _StackedSnapshots:
    """Several MLP snapshots (`SoccerPolicy(arch="mlp")`, same widths) acting in one forward pass.

    Each snapshot's layers are stacked along a leading member axis K (`SoccerPolicy.stack_weights`)
    and applied to its own matches' rows, padded to the largest count, by
    `SoccerPolicy.forward_many`: [K, M*R, D] -> [K, M*R, 10], equal to each snapshot's own
    forward up to float rounding.
    """

    def __init__(self, groups: list[tuple[Member, torch.Tensor]]):
        counts = [len(matches) for _, matches in groups]
        device = groups[0][1].device
        self.index = torch.zeros(len(groups), max(counts), dtype=torch.long, device=device)  # [K, M]
        self.valid = torch.zeros(len(groups), max(counts), dtype=torch.bool, device=device)
        for k, (_, matches) in enumerate(groups):
            self.index[k, :len(matches)] = matches
            self.valid[k, :len(matches)] = True
        self.matches = self.index[self.valid]
        policies = [m.actor for m, _ in groups]
        self.first, self.weights = policies[0], SoccerPolicy.stack_weights(policies)

    @torch.no_grad()
    def logits(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [B, R, D] (the snapshots' side) -> (the matches [m], their logits [m, R, 10])."""
        K, M = self.index.shape
        R, D = obs.shape[1:]
        h = self.first.forward_many(self.weights, obs[self.index].reshape(K, M * R, D))
        return self.matches, h.reshape(K, M, R, -1)[self.valid]


class League:
    """The opponent pool of a run, its sampling, ratings and snapshots (see the module docstring).

    `block`: matches that draw one opponent together (the GRPO group size in branch and episode
    mode, else 1). `folder`: where snapshots are written (None: nowhere; only rank 0 writes).
    """

    def __init__(self, cfg: Any, env: SoccerVecEnv, policy: SoccerPolicy, block: int, folder: Path | None,
                 rank: int = 0):
        self.cfg, self.env_config, self.policy, self.block, self.folder = cfg, env.config, policy, block, folder
        self.num_matches, self.n_blue, self.num_agents = env.num_envs, env.config.n_blue, env.num_agents
        device = env.device
        self.members: list[Member] = [
            Member(f"{name}" if strength == 1.0 else f"{name}:{strength:g}",
                   make_bot(name, env.config, strength=strength, seed=cfg.seed + 1009 * (k + 1) + rank, device=device,
                            compile=cfg.compile_bots),
                   strength=strength)
            for k, (name, strength) in enumerate(parse_anchors(cfg.league_anchors))]
        self.ratings: dict[str, float] = {"learner": INITIAL_ELO, **{m.name: INITIAL_ELO for m in self.members}}
        self.recent: dict[str, deque[float]] = {m.name: deque(maxlen=cfg.league_window) for m in self.members}
        self.generator = torch.Generator().manual_seed(cfg.seed + 7907 * (rank + 1))
        self.opponent = torch.full((self.num_matches,), LATEST, dtype=torch.long, device=device)
        self._fresh = True  # no opponent drawn yet
        self.pending: list[tuple[int, float]] = []  # (member index or LATEST, score) of matches ended this iteration
        self._groups: list[tuple[Member, torch.Tensor]] = []
        self._stacked: _StackedSnapshots | None = None

    # ------------------------------------------------------------------ the pool
    @property
    def snapshots(self) -> list[Member]:
        return [m for m in self.members if m.is_snapshot]

    def add_snapshot(self, iteration: int, train_config: dict[str, Any]) -> None:
        """Freeze the current policy as a pool member (`snapshot-<iteration>`), write it under
        `folder`, and drop the oldest snapshot beyond `league_size` (its files too, unless
        `league_keep_every` keeps every k-th)."""
        self.add_member(f"snapshot-{iteration:06d}", self.policy, iteration, train_config)

    def add_member(self, name: str, policy: SoccerPolicy, iteration: int, train_config: dict[str, Any]) -> None:
        """Freeze a copy of `policy` (the learner, or a main exploiter) as the pool member `name`,
        rated from the learner's rating, and write it under `folder`; the oldest policy member
        beyond `league_size` leaves the pool."""
        actor = copy.deepcopy(policy).requires_grad_(False)
        self.members.append(Member(name, actor, iteration))
        self.ratings[name] = self.ratings["learner"]
        self.recent[name] = deque(maxlen=self.cfg.league_window)
        if self.folder is not None:
            with atomic_directory(self.folder / name) as tmp:
                write_policy(tmp, actor, self.env_config, {**train_config, "league_iteration": iteration})
        snapshots = self.snapshots
        if len(snapshots) > self.cfg.league_size:
            self._drop(snapshots[0])

    def _drop(self, member: Member) -> None:
        index = self.members.index(member)
        del self.members[index]
        self.recent.pop(member.name)
        # the opponent ids after it shift down; matches that played it draw again at their next kickoff
        self.opponent = torch.where(self.opponent > index, self.opponent - 1,
                                    torch.where(self.opponent == index, LATEST, self.opponent))
        kept = self.cfg.league_keep_every and (member.iteration // self.cfg.league_snapshot_every) % \
            self.cfg.league_keep_every == 0
        if self.folder is not None and not kept:
            shutil.rmtree(self.folder / member.name, ignore_errors=True)

    # ------------------------------------------------------------------ drawing opponents
    def start_segment(self, env: SoccerVecEnv, segment_len: int) -> torch.Tensor:
        """Draw the red side of every block whose match kicked off during the last segment (all at
        the first call); returns the learned mask [B, N]: blue always, red where the learner
        plays itself."""
        B, G = self.num_matches, self.block
        blocks = B // G
        fresh = torch.ones(blocks, dtype=torch.bool) if self._fresh else \
            (env.steps_in_match()[::G] < segment_len).cpu()
        self._fresh = False
        if bool(fresh.any()):
            draw = self._draw(blocks)
            current = self.opponent[::G].cpu()
            chosen = torch.where(fresh, draw, current).repeat_interleave(G)
            self.opponent = chosen.to(self.opponent.device)
        # the members that play this segment, with their matches (one batched call each per step;
        # MLP snapshots all together)
        self._groups = [(self.members[k], (self.opponent == k).nonzero().squeeze(1))
                        for k in self.opponent.unique().tolist() if k != LATEST]
        snapshots = [(m, matches) for m, matches in self._groups if m.is_snapshot]
        self._stacked = None
        if len(snapshots) > 1 and self.policy.arch == "mlp":
            self._stacked = _StackedSnapshots(snapshots)
            self._groups = [(m, matches) for m, matches in self._groups if not m.is_snapshot]
        learned = torch.ones(B, self.num_agents, dtype=torch.bool, device=self.opponent.device)
        learned[:, self.n_blue:] = (self.opponent == LATEST)[:, None]
        return learned

    def _pick(self, members: list[int], blocks: int) -> torch.Tensor:
        """`blocks` draws among the member indices `members`, by `league_sampling`."""
        weights = pfsp_weights([self.score(self.members[k].name) for k in members], self.cfg.league_sampling)
        picks = torch.multinomial(weights, blocks, replacement=True, generator=self.generator)
        return torch.tensor(members, dtype=torch.long)[picks]

    def _draw(self, blocks: int) -> torch.Tensor:
        """One opponent id per block: LATEST with probability `league_latest_ratio` (or when the pool
        is empty), else a member by `league_sampling`: among all members, or, with
        `league_anchor_ratio`, an anchor with that probability and a snapshot otherwise (either
        kind alone while the other is missing)."""
        cfg = self.cfg
        u = torch.rand(blocks, generator=self.generator, dtype=torch.float64)
        if not self.members:
            return torch.full((blocks,), LATEST, dtype=torch.long)
        if cfg.league_anchor_ratio is None:
            return torch.where(u < cfg.league_latest_ratio, LATEST, self._pick(list(range(len(self.members))), blocks))
        anchors = [k for k, m in enumerate(self.members) if not m.is_snapshot]
        snapshots = [k for k, m in enumerate(self.members) if m.is_snapshot]
        anchor_picks = self._pick(anchors or snapshots, blocks)
        snapshot_picks = self._pick(snapshots or anchors, blocks)
        picks = torch.where(u < cfg.league_latest_ratio + cfg.league_anchor_ratio, anchor_picks, snapshot_picks)
        return torch.where(u < cfg.league_latest_ratio, LATEST, picks)

    def act(self, obs: torch.Tensor, actions: torch.Tensor) -> None:
        """Write the red actions [B, N] of the matches against pool members: one call per anchor and
        per snapshot, or one for all MLP snapshots."""
        red = slice(self.n_blue, self.num_agents)
        if self._stacked is not None:
            matches, logits = self._stacked.logits(obs[:, red])
            actions[matches, red] = sample_actions(logits)[0]
        for member, matches in self._groups:
            own = obs[matches]
            if member.is_snapshot:
                actions[matches, red] = member.actor.act(own[:, red], generator=None)[0]
            else:
                actions[matches, red] = member.actor.act(own[:, red])

    # ------------------------------------------------------------------ results and ratings
    def record(self, ended: torch.Tensor, results: list[float]) -> None:
        """Matches `ended` finished with blue's `results` (+1 / 0 / -1)."""
        for opponent, result in zip(self.opponent[ended].tolist(), results):
            self.pending.append((opponent, (result + 1.0) / 2.0))

    def score(self, name: str) -> float | None:
        """The learner's mean recent score against member `name` (None: no result yet)."""
        results = self.recent[name]
        return sum(results) / len(results) if results else None

    def end_iteration(self) -> dict[str, float]:
        """Fold this iteration's results (of every rank) into the ratings and recent scores; the
        league's scalars to log."""
        results = [r for rank in distributed.all_gather(self.pending) for r in rank]
        self.pending = []
        vs_pool, vs_latest = [], []
        for opponent, score in results:
            if opponent == LATEST:
                vs_latest.append(score)
                continue
            name = self.members[opponent].name
            vs_pool.append(score)
            self.recent[name].append(score)
            change = self.cfg.league_elo_k * (score - expected_score(self.ratings["learner"], self.ratings[name]))
            self.ratings["learner"] += change
            self.ratings[name] -= change
        scalars = {"league/elo": self.ratings["learner"], "league/pool_size": float(len(self.members))}
        if vs_pool:
            scalars["league/win_rate_vs_pool"] = sum(s == 1.0 for s in vs_pool) / len(vs_pool)
            scalars["league/score_vs_pool"] = sum(vs_pool) / len(vs_pool)
        if vs_latest:
            scalars["league/win_rate_vs_latest"] = sum(s == 1.0 for s in vs_latest) / len(vs_latest)
        # the opponent mix of this segment's matches (this rank's)
        counts = torch.bincount(self.opponent.cpu() + 1, minlength=len(self.members) + 1).double()
        share = (counts / counts.sum()).tolist()
        scalars["league/mix_latest"] = share[0]
        scalars["league/mix_snapshots"] = sum(s for m, s in zip(self.members, share[1:]) if m.is_snapshot)
        if any(m.name.startswith("exploiter") for m in self.members):  # main exploiters' copies (a share of the above)
            scalars["league/mix_exploiters"] = sum(s for m, s in zip(self.members, share[1:])
                                                   if m.name.startswith("exploiter"))
        for member, s in zip(self.members, share[1:]):
            if not member.is_snapshot:
                scalars[f"league/mix_{member.name}"] = s
                scalars[f"league/elo_{member.name}"] = self.ratings[member.name]
        return scalars

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The pool (snapshot weights included), ratings and recent results: the same on every rank."""
        return {"snapshots": [{"name": m.name, "iteration": m.iteration, "weights": m.actor.state_dict()}
                              for m in self.snapshots],
                "order": [m.name for m in self.members],
                "ratings": dict(self.ratings), "recent": {k: list(v) for k, v in self.recent.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        anchors = {m.name: m for m in self.members if not m.is_snapshot}
        snapshots = {}
        for saved in state["snapshots"]:
            actor = copy.deepcopy(self.policy).requires_grad_(False)
            actor.load_state_dict(saved["weights"])
            snapshots[saved["name"]] = Member(saved["name"], actor, saved["iteration"])
        missing = [name for name in state["order"] if name not in anchors and name not in snapshots]
        if missing:
            raise ValueError(f"the checkpoint's league holds anchors {missing} that this config's "
                             f"league_anchors={self.cfg.league_anchors!r} does not name")
        self.members = [anchors.get(name) or snapshots[name] for name in state["order"]]
        self.ratings = dict(state["ratings"])
        self.recent = {k: deque(v, maxlen=self.cfg.league_window) for k, v in state["recent"].items()}

    def rank_state_dict(self) -> dict[str, Any]:
        """This rank's draws: its random stream, its matches' opponents and the anchors' streams."""
        return {"generator": self.generator.get_state(), "opponent": self.opponent.cpu(), "fresh": self._fresh,
                "anchors": {m.name: m.actor.state_dict() for m in self.members if not m.is_snapshot}}

    def load_rank_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.opponent = state["opponent"].to(self.opponent.device)
        self._fresh = state["fresh"]
        for member in self.members:
            if not member.is_snapshot:
                member.actor.load_state_dict(state["anchors"][member.name])
