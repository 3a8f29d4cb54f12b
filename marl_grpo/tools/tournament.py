"""`marl-grpo tournament`: a round robin between checkpoints and scripted bots, rated on the Elo scale.

    marl-grpo tournament runs/a/checkpoint runs/b/checkpoint                 # + random, chaser, team
    marl-grpo tournament runs/a/checkpoint --bots random,team:0.5 --matches 200
    marl-grpo tournament --bots random,chaser,team --team-size 1             # bots only

Every pair of entrants plays `--matches` full matches on one `SoccerVecEnv`: match i uses env seed
`seed + i` (the same seeds for every pair), and the first entrant of the pair plays blue in the first
half of the matches and red in the second half. A checkpoint acts on the observations of its side
(they are egocentric and mirrored, so one policy plays either colour), sampling its actions from a
`torch.Generator` seeded from `--seed`; a bot acts on every player and keeps its side's columns.
An LLM checkpoint (`marl-grpo llm`'s runs/<name>/checkpoint) plays every player of its side, with
one batched generation over all matches and players every `--decide-every` steps.
Every entrant plays one env config: the team size and match length of the first checkpoint (or
`--team-size` / `--max-cycles`; without checkpoints the env's defaults), with the default rules.

Outputs in `--out` (default `runs/tournament`):

- `payoff.png`, `payoff.json`: P[i, j], the mean score of i against j (win 1, draw 1/2, loss 0),
  and the win/draw/loss counts and goal differences behind it; `mean_score`: each entrant's mean
  score over its opponents with a 95% stratified-bootstrap interval (the matches resampled within
  each opponent, as Agarwal et al., NeurIPS 2021, resample runs within each task;
  `marl_grpo.tools.stats`), also listed at the end of `ratings.md`;
- `ratings.md`, `ratings.json`: a Bradley-Terry fit of every match on the Elo scale (`fit_ratings`),
  `random` at 0 when it plays (else the mean rating is 0), with 95% bootstrap intervals:
  the matches of each pair are resampled with replacement and the fit is redone.

The gap to an entrant that lost (or won) every match is not measured: the matches only say that it
is large, and its size comes from the fit's small prior (one virtual draw per entrant against a
rating-0 virtual entrant, see `fit_ratings`). `ratings.md` says so when it happens.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable

import numpy as np
import torch
import tyro
from tqdm import tqdm

from marl_grpo.agents import BOT_NAMES, SoccerPolicy, make_bot
from marl_grpo.agents.checkpoint import load_policy, read_config, soccer_env
from marl_grpo.envs import SoccerConfig, SoccerVecEnv
from marl_grpo.envs.backend import resolve_device
from marl_grpo.envs.team import play_once
from marl_grpo.run.config import check_int
from marl_grpo.run.files import EVAL_SEED

ELO_SCALE = 400.0 / math.log(10.0)
"""Elo points per natural-log unit of Bradley-Terry strength: rating = 400 log10(strength)"""
PRIOR_DRAWS = 1.0
"""virtual draws of each entrant against a virtual entrant of rating 0 (see `fit_ratings`)"""
ANCHOR_BOT = "random"
"""the entrant held at rating 0 when it plays"""
ANY_SIZE = ("entity", "llm")
"""checkpoint kinds that play any team size: the entity policy, and an LLM (its prompts list the players)"""


@dataclass
class TournamentConfig:
    """Settings of `marl-grpo tournament`."""

    paths: tyro.conf.Positional[Annotated[list[str], tyro.conf.arg(metavar="[CHECKPOINT ...]")]] = field(
        default_factory=list)
    """checkpoint folders (runs/<name>/checkpoint), none or more; each is named by its path as given"""
    bots: str = "random,chaser,team"
    """comma-separated scripted bots: random, chaser, team, each optionally name:strength (team:0.5);
    empty for checkpoints only"""
    matches: int = 20
    """matches per pair, an even number: the first entrant plays blue in half of them, red in the rest"""
    out: str = "runs/tournament"
    """folder of payoff.png, payoff.json, ratings.md and ratings.json"""
    seed: int = EVAL_SEED
    """match i of every pair uses env seed `seed + i`; the bots' and the policies' draws and the
    bootstrap are seeded from it too"""
    bootstrap: int = 200
    """bootstrap resamples for the 95% rating intervals (0: no intervals)"""
    team_size: int | None = None
    """players per team (default: the first checkpoint's; 2 without checkpoints)"""
    max_cycles: int | None = None
    """steps per match (default: the first checkpoint's; the env's default without checkpoints)"""
    deterministic: bool = False
    """checkpoints play their most likely action instead of sampling (LLM checkpoints: greedy answers)"""
    decide_every: int | None = None
    """steps each answer of an LLM checkpoint is held (default: its run's --horizon)"""
    device: str = "auto"
    """torch device of the env, the bots and the policies"""
    progress: bool = True
    """show a progress bar over the pairs"""

    def validate(self) -> None:
        check_int(self, "matches", low=2)
        if self.matches % 2:
            raise ValueError(f"matches={self.matches} is invalid: expected an even number, so that each entrant "
                             "of a pair plays blue in half of the matches and red in the other half")
        check_int(self, "bootstrap", low=0)
        for name in ("team_size", "max_cycles"):
            if getattr(self, name) is not None:
                check_int(self, name, low=1)


# --------------------------------------------------------------------------- the Bradley-Terry fit
def _check_results(wins: np.ndarray, games: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    wins, games = np.asarray(wins, dtype=float), np.asarray(games, dtype=float)
    if wins.ndim != 2 or wins.shape[0] != wins.shape[1] or games.shape != wins.shape:
        raise ValueError(f"wins and games must both be square [K, K], got {wins.shape} and {games.shape}")
    if not (np.isfinite(wins).all() and np.isfinite(games).all()) or (wins < 0).any():
        raise ValueError("wins and games must be finite and >= 0")
    if not np.allclose(games, games.T) or not np.allclose(wins + wins.T, games):
        raise ValueError("games must be symmetric and wins[i, j] + wins[j, i] == games[i, j] "
                         "(a draw gives half a win to each side)")
    if np.diag(games).any():
        raise ValueError("the diagonal of games must be 0: an entrant does not play itself")
    return wins, games


def _log_posterior(theta: np.ndarray, wins: np.ndarray, prior_draws: float) -> float:
    """sum_ij wins_ij log sigmoid(theta_i - theta_j) + prior_draws * sum_i log sigmoid(+-theta_i) / 2."""
    gap = theta[:, None] - theta[None, :]
    return float(-(wins * np.logaddexp(0.0, -gap)).sum()
                 - 0.5 * prior_draws * (np.logaddexp(0.0, -theta) + np.logaddexp(0.0, theta)).sum())


def fit_ratings(wins: np.ndarray, games: np.ndarray, anchor: int | None = None,
                prior_draws: float = PRIOR_DRAWS) -> np.ndarray:
    """Maximum-likelihood Bradley-Terry ratings on the Elo scale, from pairwise results.

    Model (Bradley & Terry 1952; Hunter 2004, "MM algorithms for generalized Bradley-Terry models",
    Ann. Statist. 32(1)): i beats j with probability `sigmoid(theta_i - theta_j)`; a draw counts as
    half a win to each side, as in Elo. The ratings maximise the log-likelihood
    `sum_ij wins[i, j] log sigmoid(theta_i - theta_j)` plus a small prior: `prior_draws` virtual draws
    of every entrant against a virtual entrant fixed at theta = 0, as in Coulom's BayesElo ("prior"
    virtual draws). The prior keeps an entrant that never lost (or never won) finite, and makes the
    problem strictly concave, so Newton's method with a backtracking line search on the
    log-posterior finds the unique maximum in a few steps (Hunter's MM iteration reaches the same
    point, slowly when strengths are far apart; tests/test_tournament.py checks the two agree).

    Args:
        wins: [K, K] half-win counts: `wins[i, j]` = wins of i against j + half its draws with j.
        games: [K, K] matches played by each pair (symmetric, zero diagonal);
            `wins + wins.T == games`.
        anchor: entrant held at rating 0 (e.g. the random bot); None: the mean rating is 0.
        prior_draws: virtual draws per entrant (> 0); more shrinks the ratings towards each other.
    Returns:
        float64 [K]: ratings in Elo points, `400 log10(strength)`, shifted by the anchor.
    """
    wins, games = _check_results(wins, games)
    if not prior_draws > 0:
        raise ValueError(f"prior_draws={prior_draws!r} is invalid: expected > 0 (without a prior a shift of every "
                         "rating fits as well, and an entrant that never lost goes to infinity)")
    size = wins.shape[0]
    if anchor is not None and not 0 <= anchor < size:
        raise ValueError(f"anchor={anchor} is not an entrant index in [0, {size})")
    theta = np.zeros(size)
    value = _log_posterior(theta, wins, prior_draws)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))  # [K, K] P(i beats j)
        own = 1.0 / (1.0 + np.exp(-theta))                            # [K] P(i beats the virtual entrant)
        grad = (wins - games * p).sum(1) + prior_draws * (0.5 - own)
        weight = games * p * (1.0 - p)
        hessian = weight - np.diag(weight.sum(1) + prior_draws * own * (1.0 - own))
        step = -np.linalg.solve(hessian, grad)
        scale = 1.0  # backtracking: the Newton step, or the largest halving of it that does not lose
        while _log_posterior(theta + scale * step, wins, prior_draws) < value and scale > 1e-8:
            scale *= 0.5
        if np.abs(scale * step).max() < 1e-12 or scale <= 1e-8:
            break  # converged (or at the precision of float64)
        theta = theta + scale * step
        value = _log_posterior(theta, wins, prior_draws)
    ratings = theta * ELO_SCALE
    return ratings - (ratings[anchor] if anchor is not None else ratings.mean())


# --------------------------------------------------------------------------- entrants
SidePlayer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(obs [B, N, D], plays_blue bool [B]) -> int64 [B, T]: actions of the side it plays in each match"""


def _side(tensor: torch.Tensor, plays_blue: torch.Tensor, n_blue: int) -> torch.Tensor:
    """The columns of the side played in each match: [B, N, ...] -> [B, T, ...] (T = N/2 = n_blue)."""
    shape = (-1,) + (1,) * (tensor.ndim - 1)
    return torch.where(plays_blue.view(shape), tensor[:, :n_blue], tensor[:, n_blue:])


@dataclass
class Entrant:
    """A player of the tournament: a scripted bot (`bot` set), a loaded soccer checkpoint (`policy`
    set) or an LLM checkpoint (`llm` set, an `LLMPlayer` playing every player of its side)."""

    name: str
    bot: str | None = None
    strength: float = 1.0
    policy: SoccerPolicy | None = None
    llm: Any = None

    def player(self, config: SoccerConfig, seed: int, device: torch.device, deterministic: bool) -> SidePlayer:
        """A fresh player for one pair's batch of matches (its random stream starts at `seed`)."""
        n_blue = config.n_blue
        if self.bot is not None:
            bot = make_bot(self.bot, config, strength=self.strength, seed=seed, device=device)
            return lambda obs, plays_blue: _side(bot.act(obs), plays_blue, n_blue)
        if self.llm is not None:
            llm = self.llm
            llm.seed = seed
            llm.reset()
            return lambda obs, plays_blue: llm.act(_side(obs, plays_blue, n_blue)).to(obs.device)
        policy = self.policy
        generator = torch.Generator(device=policy.device).manual_seed(seed)

        def act(obs: torch.Tensor, plays_blue: torch.Tensor) -> torch.Tensor:
            own = _side(obs, plays_blue, n_blue).to(policy.device)
            return policy.act(own, deterministic=deterministic, generator=generator)[0].to(obs.device)
        return act


def parse_bots(spec: str) -> list[Entrant]:
    """`"random,team:0.5"` -> bot entrants named as written; a clear error for an unknown bot."""
    entrants = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name, _, strength_text = item.partition(":")
        if name not in BOT_NAMES:
            raise ValueError(f"unknown bot {name!r} in --bots {spec!r}: expected one of {', '.join(BOT_NAMES)}, "
                             "optionally with a strength in [0, 1] (e.g. team:0.5)")
        try:
            strength = float(strength_text) if strength_text else 1.0
        except ValueError:
            strength = math.nan
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"bot {item!r}: the strength {strength_text!r} is not a number in [0, 1]")
        entrants.append(Entrant(name=item, bot=name, strength=strength))
    return entrants


def _sizes(meta: dict[str, Any]) -> tuple[int, int]:
    env = soccer_env(meta)
    return env.get("blue_size") or env["team_size"], env.get("red_size") or env["team_size"]


def tournament_env(cfg: TournamentConfig, metas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The one env config every entrant plays, as `SoccerVecEnv` keyword arguments.

    A checkpoint whose team size differs gets a `ValueError` naming it, unless it is an entity
    policy (which reads any team size)."""
    first = next(iter(metas.items()), None)
    fixed = [(path, meta) for path, meta in metas.items() if meta["policy"].get("arch") not in ANY_SIZE]
    if cfg.team_size is not None:
        team_size, source = cfg.team_size, "--team-size"
    elif fixed or first:
        path, meta = (fixed or [first])[0]
        team_size, source = _sizes(meta)[0], f"the first checkpoint, {path!r}"
    else:
        team_size, source = SoccerConfig.team_size, "the default"
    for path, meta in fixed:
        blue, red = _sizes(meta)
        if (blue, red) != (team_size, team_size):
            trained = str(blue) if blue == red else f"{blue}v{red}"
            raise ValueError(f"checkpoint {path!r} was trained with team size {trained}, but this tournament plays "
                             f"{team_size} a side (set by {source}); every entrant must play the same team size "
                             "(only an --arch entity policy plays any size)")
    max_cycles = cfg.max_cycles or (first[1]["env"]["max_cycles"] if first else SoccerConfig.max_cycles)
    return {"team_size": team_size, "max_cycles": max_cycles}


def load_entrants(cfg: TournamentConfig, device: torch.device) -> tuple[list[Entrant], dict[str, Any]]:
    """The checkpoints (in the order given) then the bots, and the env config they all play."""
    for path in cfg.paths:
        if path in BOT_NAMES and not Path(path).is_dir():
            raise FileNotFoundError(f"no checkpoint folder {path!r}: bots go in --bots (e.g. --bots {path})")
    from marl_grpo.llm.player import is_llm_checkpoint, llm_env_kwargs, load_llm_player, read_llm_config

    llms = {path for path in cfg.paths if is_llm_checkpoint(path)}
    if cfg.decide_every is not None and not llms:
        raise ValueError("--decide-every sets how often an LLM checkpoint answers, but no entrant is one: drop it")
    # an LLM reads any team size (its prompts describe whoever is on the pitch), as an entity policy does
    metas = {path: {"policy": {"arch": "llm"}, "env": llm_env_kwargs(read_llm_config(path))} if path in llms
             else read_config(path) for path in cfg.paths}
    env_kwargs = tournament_env(cfg, metas)
    other_lengths = {path: m["env"]["max_cycles"] for path, m in metas.items()
                     if m["env"]["max_cycles"] != env_kwargs["max_cycles"]}
    if other_lengths:  # a policy plays another match length fine, but its clock reads differently
        print(f"note: every match lasts {env_kwargs['max_cycles']} steps; trained on other lengths: {other_lengths}")
    config = SoccerConfig.from_kwargs(**env_kwargs)
    entrants = [Entrant(name=path, llm=load_llm_player(path, device, config, cfg.decide_every,
                                                       greedy=cfg.deterministic)) if path in llms
                else Entrant(name=path, policy=load_policy(path, device=device, env_config=config)[0])
                for path in cfg.paths]
    entrants += parse_bots(cfg.bots)
    names = [e.name for e in entrants]
    if len(entrants) < 2:
        raise ValueError(f"a tournament needs at least 2 entrants (checkpoint folders and --bots), got {names}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"entrants {duplicates} appear more than once: each plays once")
    return entrants, env_kwargs


# --------------------------------------------------------------------------- playing
@dataclass
class PairResult:
    """The matches of one pair, first entrant against second; M matches, match i on seed `seed + i`."""

    first_blue: np.ndarray
    """bool [M]: the first entrant played blue (the first M/2 matches) or red"""
    score: np.ndarray
    """int [M, 2]: final (blue, red) goals of each match"""

    @property
    def goal_diff(self) -> np.ndarray:
        """int [M]: the first entrant's goals minus the second's."""
        diff = self.score[:, 0] - self.score[:, 1]
        return np.where(self.first_blue, diff, -diff)

    @property
    def points(self) -> np.ndarray:
        """float [M]: the first entrant's result, 1 win, 0.5 draw, 0 loss."""
        return 0.5 * (np.sign(self.goal_diff) + 1.0)


@torch.no_grad()
def play_pair(env: SoccerVecEnv, first: SidePlayer, second: SidePlayer, seed: int) -> PairResult:
    """Play `env.num_envs` matches at once, each exactly once, and return their final scores.

    The first player plays blue in matches `[0, B/2)` and red in `[B/2, B)`. The vector env resets
    a match as soon as it ends, so each match's score is taken at its first end and its later
    steps (a new match nobody counts) are ignored.
    """
    if env.config.n_blue != env.config.n_red:
        raise ValueError(f"a tournament plays even teams, got {env.config.n_blue}v{env.config.n_red}")
    B = env.num_envs
    first_blue = torch.arange(B, device=env.device) < B // 2

    def act(obs: torch.Tensor) -> torch.Tensor:
        first_side, second_side = first(obs, first_blue), second(obs, ~first_blue)
        blue = torch.where(first_blue[:, None], first_side, second_side)
        red = torch.where(first_blue[:, None], second_side, first_side)
        return torch.cat([blue, red], 1)

    score = play_once(env, act, seed, "final_score").long()
    return PairResult(first_blue=first_blue.cpu().numpy(), score=score.cpu().numpy())


def play_round_robin(entrants: list[Entrant], env_kwargs: dict[str, Any], matches: int, seed: int,
                     device: torch.device, deterministic: bool = False,
                     progress: bool = False) -> dict[tuple[int, int], PairResult]:
    """Every pair (i < j) plays `matches` matches on env seeds `seed, ..., seed + matches - 1`;
    i's random stream starts at `seed`, j's at `seed + 1`, the same for every pair."""
    env = SoccerVecEnv(num_envs=matches, device=device, **env_kwargs)
    pairs = list(itertools.combinations(range(len(entrants)), 2))
    results = {}
    for i, j in tqdm(pairs, desc="tournament", unit="pair", disable=not progress):
        first = entrants[i].player(env.config, seed, device, deterministic)
        second = entrants[j].player(env.config, seed + 1, device, deterministic)
        results[i, j] = play_pair(env, first, second, seed)
    env.close()
    return results


# --------------------------------------------------------------------------- tables
def tally(results: dict[tuple[int, int], PairResult], size: int) -> dict[str, np.ndarray]:
    """[K, K] counts from the row entrant's view: wins, draws, losses, games, half_wins (wins + draws/2)
    and goal_diff (summed)."""
    counts = {key: np.zeros((size, size)) for key in ("wins", "draws", "losses", "goal_diff")}
    for (i, j), pair in results.items():
        diff = pair.goal_diff
        for a, b, sign in ((i, j, 1), (j, i, -1)):
            counts["wins"][a, b] = (sign * diff > 0).sum()
            counts["draws"][a, b] = (diff == 0).sum()
            counts["losses"][a, b] = (sign * diff < 0).sum()
            counts["goal_diff"][a, b] = sign * diff.sum()
    counts["games"] = counts["wins"] + counts["draws"] + counts["losses"]
    counts["half_wins"] = counts["wins"] + 0.5 * counts["draws"]
    return counts


def _half_wins(points: dict[tuple[int, int], np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    wins, games = np.zeros((size, size)), np.zeros((size, size))
    for (i, j), p in points.items():
        wins[i, j], wins[j, i] = p.sum(), len(p) - p.sum()
        games[i, j] = games[j, i] = len(p)
    return wins, games


def bootstrap_ratings(results: dict[tuple[int, int], PairResult], size: int, resamples: int, seed: int,
                      anchor: int | None) -> np.ndarray:
    """[resamples, K] ratings, each fitted to the matches of every pair resampled with replacement."""
    rng = np.random.default_rng(seed)
    points = {pair: r.points for pair, r in results.items()}
    fits = []
    for _ in range(resamples):
        drawn = {pair: p[rng.integers(0, len(p), len(p))] for pair, p in points.items()}
        fits.append(fit_ratings(*_half_wins(drawn, size), anchor=anchor))
    return np.array(fits).reshape(resamples, size)


def mean_scores(results: dict[tuple[int, int], PairResult], names: list[str], resamples: int,
                seed: int) -> list[dict[str, Any]]:
    """Per entrant, its mean score over its opponents (win 1, draw 1/2, loss 0): `{"name", "point",
    "low", "high"}`, the interval from a stratified bootstrap of its `[matches, opponents]` scores
    (`marl_grpo.tools.stats`; None without resamples, or without opponents)."""
    from marl_grpo.tools import stats

    columns: dict[int, list[np.ndarray]] = {k: [] for k in range(len(names))}
    for (i, j), pair in results.items():
        columns[i].append(pair.points)
        columns[j].append(1.0 - pair.points)
    rows = []
    for k, name in enumerate(names):
        if not columns[k]:
            rows.append({"name": name, "point": None, "low": None, "high": None})
            continue
        scores = np.stack(columns[k], axis=1)
        if resamples:
            interval = stats.stratified_bootstrap_ci(scores, stats.mean, resamples, seed=seed).as_dict()
        else:
            interval = {"point": stats.mean(scores), "low": None, "high": None}
        rows.append({"name": name, **interval})
    return rows


def _scores_table(scores: list[dict[str, Any]], resamples: int) -> str:
    lines = ["| entrant | mean score over opponents | 95% CI |", "|---|---:|---|"]
    for row in sorted(scores, key=lambda r: -(r["point"] if r["point"] is not None else -1.0)):
        point = "-" if row["point"] is None else f"{row['point']:.3f}"
        ci = "-" if row["low"] is None else f"[{row['low']:.3f}, {row['high']:.3f}]"
        lines.append(f"| `{row['name']}` | {point} | {ci} |")
    lines += ["", f"Mean score (win 1, draw 1/2, loss 0) against every other entrant, equal weight per opponent; "
              f"95% intervals: {resamples} stratified-bootstrap resamples, the matches resampled within each opponent "
              "(Agarwal et al., NeurIPS 2021).", ""]
    return "\n".join(lines)


def format_payoff(names: list[str], payoff: np.ndarray) -> str:
    """The payoff matrix as a fixed-width text table (rows: the entrant, columns: its opponent)."""
    width = max(6, *(len(n) for n in names))
    lines = [" " * width + "".join(f"  {n:>{width}}" for n in names)]
    for name, row in zip(names, payoff):
        cells = "".join(f"  {'-' if math.isnan(v) else f'{v:.2f}':>{width}}" for v in row)
        lines.append(f"{name:<{width}}{cells}")
    return "\n".join(lines)


def _ratings_table(rows: list[dict[str, Any]], counts: dict[str, np.ndarray], names: list[str],
                   anchor_note: str, matches: int, resamples: int) -> str:
    lines = ["| rank | entrant | rating (Elo) | 95% CI | matches | W-D-L |", "|---:|---|---:|---|---:|---|"]
    for rank, row in enumerate(rows, 1):
        k = names.index(row["name"])
        ci = "-" if row["ci_low"] is None else f"[{row['ci_low']:.0f}, {row['ci_high']:.0f}]"
        wdl = "-".join(str(int(counts[key][k].sum())) for key in ("wins", "draws", "losses"))
        lines.append(f"| {rank} | `{row['name']}` | {row['rating']:.0f} | {ci} | {row['matches']} | {wdl} |")
    lines += ["", f"Bradley-Terry maximum-likelihood fit of every match ({matches} per pair, a draw is half a win), "
              f"on the Elo scale; {anchor_note}. 95% intervals: {resamples} bootstrap resamples of each pair's "
              f"matches (percentiles; the anchor's interval is 0 by construction). Prior: {PRIOR_DRAWS:g} virtual "
              "draw per entrant against a rating-0 virtual entrant.", ""]
    score = counts["half_wins"].sum(1) / counts["games"].sum(1)
    extreme = [f"`{names[k]}`" for k in range(len(names)) if score[k] in (0.0, 1.0)]
    if extreme:
        lines += [f"{', '.join(extreme)} won or lost every match: how far it stands from the rest is set by the "
                  "prior, not measured (the matches only say that it is large).", ""]
    return "\n".join(lines)


def plot_payoff(names: list[str], payoff: np.ndarray, path: Path, title: str) -> None:
    """A heatmap of the payoff matrix with each cell's value written in it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = len(names)
    side = 1.6 + 0.9 * size
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    ax.set_facecolor("0.9")  # the diagonal: nobody plays itself
    image = ax.imshow(np.ma.masked_invalid(payoff), cmap="RdYlGn", vmin=0.0, vmax=1.0)
    for i, j in itertools.product(range(size), range(size)):
        text = "-" if math.isnan(payoff[i, j]) else f"{payoff[i, j]:.2f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=9)
    ax.set_xticks(range(size), names, rotation=30, ha="right")
    ax.set_yticks(range(size), names)
    ax.set_xlabel("opponent")
    ax.set_ylabel("entrant")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="score of the entrant (win 1, draw 0.5, loss 0)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_league_elo(run_dir: str | Path, path: str | Path) -> Path:
    """The online Elo of a league run (`league/elo` and the anchors' `league/elo_<name>`, from its
    TensorBoard events) against env steps, drawn into `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from marl_grpo.tools.compare import read_scalars

    run_dir = Path(run_dir)
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    tags = sorted(t for t in accumulator.Tags()["scalars"] if t.startswith("league/elo"))
    if "league/elo" not in tags:
        raise FileNotFoundError(f"{str(run_dir)!r} has no league/elo scalars: is it a run with --opponent league?")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for tag in tags:
        steps, values = read_scalars(run_dir, tag)
        label = "learner" if tag == "league/elo" else tag.removeprefix("league/elo_") + " (anchor)"
        ax.plot(steps / 1e6, values, lw=2.0 if tag == "league/elo" else 1.2, label=label)
    ax.set_xlabel("env steps (millions)")
    ax.set_ylabel("online Elo (all start at 1200)")
    ax.set_title(f"league ratings during training: {run_dir.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _listed(matrix: np.ndarray) -> list[list[float | None]]:
    return [[None if math.isnan(v) else float(v) for v in row] for row in matrix]


# --------------------------------------------------------------------------- the command
def run_tournament(cfg: TournamentConfig) -> dict[str, Any]:
    """Play the round robin, fit the ratings, print the payoff table and the ratings, write the files.

    Returns `names`, `payoff` [K, K] (NaN diagonal), the counts of `tally`, `ratings` (the rows of
    ratings.json, best first), `mean_score` (of `mean_scores`), `anchor` (the entrant at rating 0,
    or None for a zero mean), `env` and `out`.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    entrants, env_kwargs = load_entrants(cfg, device)
    names = [e.name for e in entrants]
    size = len(entrants)
    results = play_round_robin(entrants, env_kwargs, cfg.matches, cfg.seed, device, cfg.deterministic, cfg.progress)
    counts = tally(results, size)
    with np.errstate(invalid="ignore"):
        payoff = np.where(np.eye(size, dtype=bool), np.nan, counts["half_wins"] / counts["games"])

    anchor = next((k for k, e in enumerate(entrants) if e.bot == ANCHOR_BOT), None)
    anchor_note = f"`{names[anchor]}` is held at 0" if anchor is not None else "the mean rating is held at 0"
    ratings = fit_ratings(counts["half_wins"], counts["games"], anchor=anchor)
    if cfg.bootstrap:
        fits = bootstrap_ratings(results, size, cfg.bootstrap, cfg.seed, anchor)
        low, high = np.percentile(fits, [2.5, 97.5], axis=0)
    rows = sorted(({"name": names[k], "rating": float(ratings[k]),
                    "ci_low": float(low[k]) if cfg.bootstrap else None,
                    "ci_high": float(high[k]) if cfg.bootstrap else None,
                    "matches": int(counts["games"][k].sum())} for k in range(size)),
                  key=lambda row: -row["rating"])

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{env_kwargs['team_size']}v{env_kwargs['team_size']}, {cfg.matches} matches per pair"
    scores = mean_scores(results, names, cfg.bootstrap, cfg.seed)
    plot_payoff(names, payoff, out / "payoff.png", f"payoff: row against column ({title})")
    (out / "payoff.json").write_text(json.dumps({
        "names": names, "payoff": _listed(payoff),
        **{key: counts[key].astype(int).tolist() for key in ("wins", "draws", "losses", "goal_diff")},
        "matches_per_pair": cfg.matches, "seed": cfg.seed, "env": env_kwargs, "mean_score": scores,
    }, indent=1))
    table = _ratings_table(rows, counts, names, anchor_note, cfg.matches, cfg.bootstrap)
    table += "\n" + _scores_table(scores, cfg.bootstrap)
    (out / "ratings.md").write_text(table)
    (out / "ratings.json").write_text(json.dumps(rows, indent=1))

    print(f"payoff: score of the row against the column (win 1, draw 0.5, loss 0), {title}:")
    print(format_payoff(names, payoff))
    print()
    print(table)
    print(f"written to {out}: payoff.png, payoff.json, ratings.md, ratings.json")
    return {"names": names, "payoff": payoff, **counts, "ratings": rows, "mean_score": scores,
            "anchor": names[anchor] if anchor is not None else None, "env": env_kwargs, "out": str(out)}
