"""`marl_grpo.evaluate` (marl_grpo/rl/score.py): any policy callable, a SoccerPolicy or a checkpoint,
scored against our bots, with the same figures as `marl-grpo eval`."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import marl_grpo
from marl_grpo.agents import SoccerPolicy, make_bot
from marl_grpo.agents.checkpoint import load_policy, write_policy
from marl_grpo.envs import NUM_ACTIONS, SoccerConfig
from marl_grpo.play import EvalConfig, run_eval
from marl_grpo.rl import play_matches
from marl_grpo.rl.score import Score
from marl_grpo.run.presets import parse_config

CYCLES = 60
"""steps per match in these tests: long enough for goals, short on a busy CPU"""


def random_player(seed: int):
    rng = np.random.default_rng(seed)
    return lambda obs: rng.integers(0, NUM_ACTIONS, obs.shape[:2])


def bot_player(name: str, seed: int = 1):
    """A scripted bot playing blue through the callable interface (torch observations)."""
    bot = make_bot(name, SoccerConfig(team_size=2, max_cycles=CYCLES), seed=seed)
    return lambda obs: bot.act(obs)


def sign_rule(obs):
    """A deterministic rule that reads the observation with comparisons only, so that numpy and torch
    give the same actions bit for bit: the signs of three features pick a move or a kick."""
    lib = torch if isinstance(obs, torch.Tensor) else np
    x, y, z = obs[..., 0] > 0, obs[..., 1] > 0, obs[..., 2] > 0
    moves = 1 + lib.where(x, 2, 0) + lib.where(y, 1, 0)
    return lib.where(z & x, 9, moves)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny untrained soccer checkpoint (2v2, matches of CYCLES steps): its policy samples."""
    config = SoccerConfig(team_size=2, max_cycles=CYCLES)
    torch.manual_seed(0)
    policy = SoccerPolicy(config, hidden=8, device="cpu")
    folder = tmp_path_factory.mktemp("score") / "checkpoint"
    folder.mkdir()
    write_policy(folder, policy, config, {})
    return str(folder)


# ------------------------------------------------------------------------------ figures
def test_random_policy_scores_near_the_random_bot():
    matches = 96
    mine = marl_grpo.evaluate(random_player(0), opponent="team", matches=matches, max_cycles=CYCLES, device="cpu")
    bot = marl_grpo.evaluate(bot_player("random"), opponent="team", matches=matches, max_cycles=CYCLES,
                             device="cpu", obs_type="torch")
    team = marl_grpo.evaluate(bot_player("team"), opponent="team", matches=matches, max_cycles=CYCLES,
                              device="cpu", obs_type="torch")
    assert mine.seeds == bot.seeds == range(0, matches)
    # Both play uniform random actions on the same seeds, with different random streams: the means
    # differ by sampling noise only. 4 standard errors of a difference of two independent means
    # (each from its matches' spread) is missed by chance with probability 6e-5.
    for name in ("goal_diff", "goals_against"):
        mine_values, bot_values = (np.array([(b - r) if name == "goal_diff" else r for b, r in s.match_scores])
                                   for s in (mine, bot))
        se = math.sqrt(mine_values.var(ddof=1) / matches + bot_values.var(ddof=1) / matches)
        assert abs(getattr(mine, name) - getattr(bot, name)) < 4 * se, name
        # and the check can fail: the team bot playing blue is far from the random bot's figures
        assert abs(getattr(team, name) - getattr(bot, name)) > 4 * se, name
    assert bot.loss_rate > 0.5 and mine.loss_rate > 0.5 and team.loss_rate < bot.loss_rate


def test_checkpoint_equals_marl_grpo_eval(checkpoint, device):
    matches, seed = 24, 5
    args = [checkpoint, "--matches", str(matches), "--seed", str(seed), "--opponent", "chaser", "--device", device]
    figures = run_eval(parse_config(EvalConfig, args, "marl-grpo eval"))
    score = marl_grpo.evaluate(checkpoint, opponent="chaser", matches=matches, seed=seed, device=device)
    assert (score.blue_size, score.red_size, score.max_cycles) == (2, 2, CYCLES)  # the checkpoint's matches
    # the eval command's figures, computed as play_matches computes them (float32 means), bit for bit
    goals = torch.tensor(score.match_scores).float()
    diff = goals[:, 0] - goals[:, 1]
    again = {"eval/win_rate": float((diff > 0).float().mean()), "eval/draw_rate": float((diff == 0).float().mean()),
             "eval/loss_rate": float((diff < 0).float().mean()), "eval/goal_diff": float(diff.mean()),
             "eval/goals_for": float(goals[:, 0].mean()), "eval/goals_against": float(goals[:, 1].mean())}
    assert again == figures
    assert score.wins == round(figures["eval/win_rate"] * matches)
    assert score.losses == round(figures["eval/loss_rate"] * matches)
    assert score.wins + score.draws + score.losses == matches
    # the policy object plays the same matches; deterministic is passed on
    policy, _ = load_policy(checkpoint, device=device)
    assert marl_grpo.evaluate(policy, opponent="chaser", matches=matches, seed=seed,
                              max_cycles=CYCLES).match_scores == score.match_scores
    greedy = marl_grpo.evaluate(checkpoint, opponent="chaser", matches=matches, seed=seed, deterministic=True,
                                device=device)
    result = play_matches(policy, {"team_size": 2, "max_cycles": CYCLES}, "chaser", 1.0, matches, seed,
                          deterministic=True)
    assert greedy.goal_diff == pytest.approx(result["eval/goal_diff"], abs=1e-6)
    assert greedy.win_rate == pytest.approx(result["eval/win_rate"], abs=1e-6)


def test_numpy_torch_and_list_callables_give_the_same_result(device):
    kwargs = {"opponent": "chaser", "matches": 16, "seed": 3, "max_cycles": CYCLES, "device": device}
    seen = []

    def numpy_rule(obs):
        seen.append(type(obs))
        return sign_rule(obs)

    from_numpy = marl_grpo.evaluate(numpy_rule, **kwargs)
    from_torch = marl_grpo.evaluate(sign_rule, obs_type="torch", **kwargs)
    from_list = marl_grpo.evaluate(lambda obs: sign_rule(obs).tolist(), **kwargs)
    assert seen[0] is np.ndarray
    assert from_numpy.match_scores == from_torch.match_scores == from_list.match_scores
    assert from_numpy == from_torch
    assert sum(b + r for b, r in from_numpy.match_scores) > 0  # goals were scored: the matches were played


def test_intervals_contain_the_point_and_shrink_with_more_matches():
    few = marl_grpo.evaluate(random_player(1), opponent="random", matches=16, max_cycles=CYCLES, device="cpu")
    many = marl_grpo.evaluate(random_player(1), opponent="random", matches=128, max_cycles=CYCLES, device="cpu")
    wider = Score.from_match_scores(many.match_scores, confidence=0.99, opponent="random", opponent_strength=1.0,
                                    blue_size=2, red_size=2, max_cycles=CYCLES)
    for score in (few, many, wider):
        for name in ("win_rate", "draw_rate", "loss_rate", "goal_diff", "goals_for", "goals_against"):
            low, high = getattr(score, f"{name}_interval")
            assert low <= getattr(score, name) <= high, name
        assert score.wins + score.draws + score.losses == score.matches
    for name in ("draw_rate", "goal_diff", "goals_for"):
        def width(s: Score) -> float:
            low, high = getattr(s, f"{name}_interval")
            return high - low
        assert width(many) < width(few), name
        assert width(wider) > width(many), name
    # Wilson's interval of 0 wins out of 16 at 95% (hand-computed: z^2 / (n + z^2) = 3.8415 / 19.8415)
    zero = Score.from_match_scores([(0, 1)] * 16, opponent="team", opponent_strength=1.0, blue_size=2, red_size=2,
                                   max_cycles=CYCLES)
    assert zero.win_rate_interval == pytest.approx((0.0, 0.19361), abs=1e-5)
    assert zero.goal_diff_interval == (-1.0, -1.0)


def test_score_dict_and_text():
    score = marl_grpo.evaluate(random_player(2), opponent="random", matches=8, seed=40, max_cycles=CYCLES,
                               device="cpu")
    data = json.loads(json.dumps(score.as_dict()))
    assert data["seeds"] == [40, 47] and data["matches"] == 8 and data["opponent"] == "random"
    assert data["wins"] + data["draws"] + data["losses"] == 8
    assert data["win_rate_interval"] == list(score.win_rate_interval)
    assert "match_scores" not in data
    text = str(score)
    assert "2v2 vs random bot" in text and "seeds 40..47" in text
    assert f"{score.wins}-{score.draws}-{score.losses} (W-D-L)" in text and "Wilson" in text


def test_import_stays_light_and_evaluate_is_lazy():
    code = ("import sys, marl_grpo; assert 'torch' not in sys.modules, 'import marl_grpo loaded torch'; "
            "assert 'evaluate' in dir(marl_grpo); f = marl_grpo.evaluate; assert 'torch' in sys.modules; "
            "print(f.__module__, marl_grpo.Score.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["marl_grpo.rl.score", "Score"]
    with pytest.raises(AttributeError, match="no attribute 'evaluat'"):
        marl_grpo.evaluat  # noqa: B018


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("policy, kwargs, message", [
    (lambda obs: np.zeros((obs.shape[0], 3), int), {}, r"shape \(4, 3\): expected \[B, N\] = \(4, 2\)"),
    (lambda obs: np.zeros(obs.shape[0], int), {}, r"shape \(4,\): expected \[B, N\] = \(4, 2\)"),
    (lambda obs: np.full(obs.shape[:2], 10), {}, r"action 10: expected integers in \[0, 10\)"),
    (lambda obs: -np.ones(obs.shape[:2], int), {}, r"action -1: expected integers in \[0, 10\)"),
    (lambda obs: np.zeros(obs.shape[:2]), {}, r"dtype float64: expected integers in \[0, 10\)"),
    (lambda obs: torch.zeros(obs.shape[:2]), {"obs_type": "torch"}, r"dtype torch.float32: expected integers"),
    (lambda obs: [[0, 1], [2]], {}, r"no \[B, N\] array"),
    (sign_rule, {"opponent": "keeper"}, r"opponent='keeper' is invalid: expected one of random, chaser, team"),
    (sign_rule, {"matches": 0}, r"matches=0 is invalid: expected an integer >= 1"),
    (sign_rule, {"matches": -3}, r"matches=-3 is invalid: expected an integer >= 1"),
    (sign_rule, {"matches": 2.5}, r"matches=2.5 is invalid: expected an integer >= 1"),
    (sign_rule, {"seed": -1}, r"seed=-1 is invalid: expected an integer >= 0"),
    (sign_rule, {"opponent_strength": 1.5}, r"opponent_strength=1.5 is invalid: expected a number in \[0, 1\]"),
    (sign_rule, {"confidence": 95}, r"confidence=95 is invalid: expected a number in \(0, 1\)"),
    (sign_rule, {"obs_type": "jax"}, r"obs_type='jax' is invalid: expected one of numpy, torch"),
    (sign_rule, {"deterministic": True}, r"deterministic=True is for a SoccerPolicy or a checkpoint"),
    (sign_rule, {"env_kwargs": {"max_cycle": 9}}, r"env_kwargs: unknown soccer argument\(s\) \['max_cycle'\]"),
    (sign_rule, {"env_kwargs": {"max_cycles": 9}, "max_cycles": 9},
     r"env_kwargs holds \['max_cycles'\], also given as arguments of evaluate: give each once"),
    (sign_rule, {"env_kwargs": {"num_envs": 9}}, r"env_kwargs holds \['num_envs'\]: evaluate sets num_envs, device"),
    (sign_rule, {"env_kwargs": [("team_size", 3)]}, r"env_kwargs=\[\('team_size', 3\)\] is invalid: expected a dict"),
    (42, {}, r"policy=42 is invalid: expected a callable obs \[B, N, D\] -> actions \[B, N\]"),
    ("no/such/folder", {}, r"policy='no/such/folder' is invalid: expected a callable, a SoccerPolicy or a "),
])
def test_bad_input_gets_one_clear_error(policy, kwargs, message):
    kwargs = {"matches": 4, "max_cycles": 5, "device": "cpu", **kwargs}
    with pytest.raises(ValueError, match=message):
        marl_grpo.evaluate(policy, **kwargs)


def test_bad_checkpoint_folder_and_options(tmp_path, checkpoint):
    with pytest.raises(ValueError, match=r"policy='.*empty' is not a usable soccer checkpoint: no checkpoint at .*expected a folder holding "
                                         r"policy.safetensors and config.json"):
        (tmp_path / "empty").mkdir()
        marl_grpo.evaluate(str(tmp_path / "empty"), matches=2)
    with pytest.raises(ValueError, match=r"obs_type='numpy' is for a policy callable"):
        marl_grpo.evaluate(checkpoint, matches=2, obs_type="numpy")
    with pytest.raises(ValueError, match=r"checkpoint was trained on observations of width"):
        marl_grpo.evaluate(checkpoint, team_size=3, matches=2, device="cpu")
