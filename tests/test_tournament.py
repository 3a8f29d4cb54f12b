"""`marl-grpo tournament`: the Bradley-Terry fit against hand-worked numbers and a plain MM loop,
and tiny round robins of bots and checkpoints through the real command."""

import json
import math

import numpy as np
import pytest
import torch

from marl_grpo.agents import SoccerPolicy
from marl_grpo.agents.checkpoint import write_policy
from marl_grpo.cli import main
from marl_grpo.envs import SoccerConfig, SoccerVecEnv
from marl_grpo.tools.tournament import (ELO_SCALE, TournamentConfig, fit_ratings, parse_bots, play_pair,
                                        run_tournament)


def _checkpoint(path, team_size: int, arch: str = "mlp", max_cycles: int = 30) -> str:
    """A tiny untrained policy written as a checkpoint folder."""
    torch.manual_seed(0)
    config = SoccerConfig(team_size=team_size, max_cycles=max_cycles)
    policy = SoccerPolicy(config, arch=arch, hidden=8, device="cpu")
    path.mkdir(parents=True)
    write_policy(path, policy, config, {})
    return str(path)


def _hunter_mm(wins: np.ndarray, games: np.ndarray, prior_draws: float, iterations: int = 20000) -> np.ndarray:
    """Reference: Hunter (2004) eq. (3), the MM update gamma_i <- W_i / sum_j n_ij / (gamma_i + gamma_j),
    with one more opponent fixed at gamma = 1 that every entrant drew `prior_draws` times."""
    gamma = np.ones(len(wins))
    for _ in range(iterations):
        for i in range(len(wins)):
            total = wins[i].sum() + 0.5 * prior_draws
            rate = sum(games[i, j] / (gamma[i] + gamma[j]) for j in range(len(wins)) if j != i)
            gamma[i] = total / (rate + prior_draws / (gamma[i] + 1.0))
    ratings = np.log(gamma) * ELO_SCALE
    return ratings - ratings.mean()


# --------------------------------------------------------------------------- the fit
def test_fit_of_two_entrants_is_the_log_odds_in_elo():
    # 3 wins in 4: strength ratio 3, i.e. 400 log10(3) = 190.85 Elo apart (a negligible prior)
    ratings = fit_ratings(np.array([[0, 3.0], [1.0, 0]]), np.array([[0, 4.0], [4.0, 0]]), anchor=1,
                          prior_draws=1e-9)
    assert ratings[1] == 0.0
    assert ratings[0] == pytest.approx(400 * math.log10(3), abs=1e-3)
    even = fit_ratings(np.array([[0, 1.0], [1.0, 0]]), np.array([[0, 2.0], [2.0, 0]]))
    assert even == pytest.approx([0.0, 0.0], abs=1e-9)


def test_fit_agrees_with_hunters_mm_iteration():
    wins = np.array([[0, 3.0, 2.0, 5.0], [1.0, 0, 2.5, 4.0], [2.0, 1.5, 0, 6.0], [0.0, 0.0, 0.0, 0]])
    games = np.array([[0, 4.0, 4.0, 5.0], [4.0, 0, 4.0, 4.0], [4.0, 4.0, 0, 6.0], [5.0, 4.0, 6.0, 0]])
    ratings = fit_ratings(wins, games)  # entrant 3 lost every match: finite thanks to the prior
    assert np.isfinite(ratings).all() and ratings.mean() == pytest.approx(0.0, abs=1e-9)
    assert ratings == pytest.approx(_hunter_mm(wins, games, prior_draws=1.0), abs=1e-4)
    assert ratings[3] < -300 and ratings.argmax() == 0
    anchored = fit_ratings(wins, games, anchor=2)
    assert anchored[2] == 0.0 and anchored == pytest.approx(ratings - ratings[2], abs=1e-9)


def test_fit_recovers_known_ratings_from_simulated_matches():
    truth = np.array([0.0, 150.0, 400.0, -250.0])
    rng = np.random.default_rng(0)
    size, per_pair = len(truth), 3000
    wins, games = np.zeros((size, size)), np.zeros((size, size))
    for i in range(size):
        for j in range(i + 1, size):
            p_win = 1.0 / (1.0 + 10 ** ((truth[j] - truth[i]) / 400))
            p_draw = 0.4 * min(p_win, 1 - p_win)  # draws: half a win each; the expected score stays p_win
            outcome = rng.choice([1.0, 0.5, 0.0], size=per_pair, p=[p_win - p_draw / 2, p_draw, 1 - p_win - p_draw / 2])
            wins[i, j], wins[j, i] = outcome.sum(), per_pair - outcome.sum()
            games[i, j] = games[j, i] = per_pair
    ratings = fit_ratings(wins, games, anchor=0)
    assert ratings == pytest.approx(truth, abs=25.0)
    assert list(np.argsort(ratings)) == [3, 0, 1, 2]


def test_fit_rejects_inconsistent_results():
    with pytest.raises(ValueError, match="wins\\[i, j\\] \\+ wins\\[j, i\\] == games"):
        fit_ratings(np.array([[0, 3.0], [3.0, 0]]), np.array([[0, 4.0], [4.0, 0]]))
    with pytest.raises(ValueError, match="prior_draws"):
        fit_ratings(np.array([[0, 1.0], [1.0, 0]]), np.array([[0, 2.0], [2.0, 0]]), prior_draws=0.0)


# --------------------------------------------------------------------------- playing
def test_colours_swap_halfway_through_a_pairs_matches():
    env = SoccerVecEnv(num_envs=8, device="cpu", team_size=1, max_cycles=100)
    team, random = parse_bots("team,random")
    for first, second, sign in ((team, random, 1), (random, team, -1)):
        result = play_pair(env, first.player(env.config, 0, torch.device("cpu"), False),
                           second.player(env.config, 1, torch.device("cpu"), False), seed=5)
        assert result.first_blue.tolist() == [True] * 4 + [False] * 4
        blue_margin = result.score[:, 0] - result.score[:, 1]
        # the team bot wins from either colour: blue is ahead in one half, red in the other
        assert sign * blue_margin[:4].sum() > 0 and sign * blue_margin[4:].sum() < 0
        assert sign * result.goal_diff.sum() > 0 and (result.points[result.goal_diff > 0] == 1).all()


def test_each_match_counts_its_first_end_only():
    # with goals_to_win=1 matches end at different steps and restart at once; the batch plays on
    # until every match has ended, and a restarted match's later end must not replace the first
    team, chaser = parse_bots("team,chaser")  # deterministic at strength 1: a match plays the same in any batch
    cpu = torch.device("cpu")

    def pair(num_envs: int, seed: int):
        env = SoccerVecEnv(num_envs=num_envs, device="cpu", team_size=1, max_cycles=150, goals_to_win=1)
        return play_pair(env, team.player(env.config, 0, cpu, False), chaser.player(env.config, 1, cpu, False), seed)

    batch = pair(6, seed=0)
    for match in range(6):
        # the same match (seed `match`, same colours) alone in a batch of 2, which stops at its end
        alone, index = (pair(2, seed=match), 0) if match < 3 else (pair(2, seed=match - 1), 1)
        assert alone.first_blue[index] == batch.first_blue[match]
        assert alone.score[index].tolist() == batch.score[match].tolist()


# --------------------------------------------------------------------------- the command
def test_tournament_command_writes_the_payoff_and_ratings(tmp_path):
    mlp = _checkpoint(tmp_path / "mlp", team_size=1)
    entity = _checkpoint(tmp_path / "entity", team_size=2, arch="entity")  # plays any team size
    out = tmp_path / "out"
    main(["tournament", mlp, entity, "--bots", "random,team", "--matches", "4", "--bootstrap", "20",
          "--out", str(out), "--device", "cpu", "--no-progress"])
    names = [mlp, entity, "random", "team"]

    payoff = json.loads((out / "payoff.json").read_text())
    assert payoff["names"] == names and payoff["env"] == {"team_size": 1, "max_cycles": 30}
    wins, draws, losses = (np.array(payoff[k]) for k in ("wins", "draws", "losses"))
    off = ~np.eye(4, dtype=bool)
    assert ((wins + draws + losses)[off] == 4).all() and (np.diag(wins + draws + losses) == 0).all()
    assert (wins == losses.T).all() and (draws == draws.T).all()
    matrix = np.array([[np.nan if v is None else v for v in row] for row in payoff["payoff"]])
    assert np.isnan(np.diag(matrix)).all()
    assert matrix[off] == pytest.approx((1 - matrix.T)[off])
    assert matrix[off] == pytest.approx(((wins + 0.5 * draws) / 4)[off])

    ratings = json.loads((out / "ratings.json").read_text())
    assert sorted(r["name"] for r in ratings) == sorted(names)
    assert [r["rating"] for r in ratings] == sorted((r["rating"] for r in ratings), reverse=True)
    by_name = {r["name"]: r for r in ratings}
    assert by_name["random"]["rating"] == 0.0 and by_name["random"]["ci_low"] == by_name["random"]["ci_high"] == 0.0
    for row in ratings:
        assert set(row) == {"name", "rating", "ci_low", "ci_high", "matches"} and row["matches"] == 12
        assert row["ci_low"] <= row["rating"] + 1e-6 and row["rating"] <= row["ci_high"] + 1e-6
    table = (out / "ratings.md").read_text().splitlines()
    assert table[0].startswith("| rank | entrant | rating (Elo) | 95% CI | matches")
    assert [line.split("|")[2].strip(" `") for line in table[2:6]] == [r["name"] for r in ratings]
    assert (out / "payoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # fixed seeds: the same command gives the same matches
    again = run_tournament(TournamentConfig(paths=[mlp, entity], bots="random,team", matches=4, bootstrap=0,
                                            out=str(tmp_path / "again"), device="cpu", progress=False))
    assert (again["wins"] == wins).all() and (again["draws"] == draws).all()


def test_team_bot_rates_well_above_random(tmp_path):
    result = run_tournament(TournamentConfig(bots="random,team", matches=20, bootstrap=100, team_size=1,
                                             max_cycles=100, out=str(tmp_path), device="cpu", progress=False))
    team = next(r for r in result["ratings"] if r["name"] == "team")
    assert result["anchor"] == "random" and result["payoff"][1, 0] >= 0.8
    assert team["rating"] > 300 and team["ci_low"] > 0


def test_bad_input_fails_with_a_clear_error(tmp_path):
    def run(**kwargs):
        return run_tournament(TournamentConfig(out=str(tmp_path / "out"), device="cpu", progress=False, **kwargs))

    with pytest.raises(ValueError, match="unknown bot 'nope'.*random, chaser, team"):
        run(bots="random,nope")
    with pytest.raises(ValueError, match="strength '2' is not a number in \\[0, 1\\]"):
        run(bots="random,team:2")
    with pytest.raises(ValueError, match="matches=5 is invalid: expected an even number"):
        run(bots="random,team", matches=5)
    with pytest.raises(ValueError, match="at least 2 entrants"):
        run(bots="team")
    with pytest.raises(ValueError, match="appear more than once"):
        run(bots="team,team")
    with pytest.raises(FileNotFoundError, match="bots go in --bots"):
        run(paths=["chaser"], bots="random")
    small, big = _checkpoint(tmp_path / "small", team_size=1), _checkpoint(tmp_path / "big", team_size=2)
    with pytest.raises(ValueError, match=f"checkpoint '{big}' was trained with team size 2, but this tournament "
                                         "plays 1 a side"):
        run(paths=[small, big], bots="")
    with pytest.raises(SystemExit, match="marl-grpo tournament: unknown bot 'nope'"):
        main(["tournament", "--bots", "random,nope"])
