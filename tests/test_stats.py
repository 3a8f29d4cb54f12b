"""The aggregate statistics of `marl_grpo.tools.stats` against hand-computed cases."""

import numpy as np
import pytest

from marl_grpo.tools import stats


def _scipy_trim_mean(values, proportion):
    """scipy.stats.trim_mean(values, proportion, axis=None), written out: sort, cut int(p n) per end."""
    flat = sorted(np.ravel(values).tolist())
    cut = int(proportion * len(flat))
    kept = flat[cut:len(flat) - cut]
    return sum(kept) / len(kept)


def test_iqm_is_the_25_percent_trimmed_mean():
    assert stats.iqm(np.arange(1, 9)) == pytest.approx(np.mean([3, 4, 5, 6]))  # 4.5
    assert stats.iqm(np.arange(1, 11)) == pytest.approx(np.mean(np.arange(3, 9)))  # int(2.5) = 2 cut per end
    assert stats.iqm([5.0, 1.0, 3.0]) == pytest.approx(3.0)  # int(0.75) = 0: the plain mean
    assert stats.iqm([[1.0, 100.0], [2.0, 0.0]]) == pytest.approx(1.5)  # over all runs x tasks: 0,1,2,100
    rng = np.random.default_rng(3)
    for n in (4, 7, 13, 50):
        values = rng.normal(size=(n, 3)) ** 3
        assert stats.iqm(values) == pytest.approx(_scipy_trim_mean(values, 0.25))
        assert stats.trimmed_mean(values, 0.1) == pytest.approx(_scipy_trim_mean(values, 0.1))
    assert stats.iqm(np.arange(1, 9)) != pytest.approx(np.mean(np.arange(1, 9)) + 0.1)


def test_probability_of_improvement_counts_ties_as_half():
    assert stats.probability_of_improvement([4.0, 5.0, 6.0], [1.0, 2.0]) == 1.0
    assert stats.probability_of_improvement([1.0, 2.0], [4.0, 5.0, 6.0]) == 0.0
    assert stats.probability_of_improvement([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 0.5
    # x = (1, 2, 2), y = (2, 3): pairs x > y: none; ties: (2, 2) twice -> 2 * 0.5 = 1, of 6 pairs
    assert stats.probability_of_improvement([1.0, 2.0, 2.0], [2.0, 3.0]) == pytest.approx(1 / 6)
    # x = (3, 1), y = (2, 1): 3>2, 3>1, 1 vs 1 tie, 1<2 -> (2 + 0.5) / 4
    assert stats.probability_of_improvement([3.0, 1.0], [2.0, 1.0]) == pytest.approx(0.625)
    # averaged over tasks: task 0 all wins (1.0), task 1 all losses (0.0)
    assert stats.probability_of_improvement([[5.0, 0.0], [6.0, 1.0]], [[1.0, 9.0]]) == pytest.approx(0.5)


def test_the_bootstrap_interval_covers_the_point_and_shrinks_with_more_runs():
    rng = np.random.default_rng(0)
    widths = []
    for runs in (5, 50, 500):
        scores = rng.normal(0.5, 0.2, size=(runs, 2))
        point, low, high = stats.stratified_bootstrap_ci(scores, stats.iqm, reps=500)
        assert point == pytest.approx(stats.iqm(scores))
        assert low <= point <= high and low < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < 0.1


def test_the_bootstrap_is_reproducible_with_a_seed():
    scores = np.random.default_rng(1).normal(size=(6, 2))
    first = stats.stratified_bootstrap_ci(scores, stats.mean, reps=300, seed=7)
    assert stats.stratified_bootstrap_ci(scores, stats.mean, reps=300, seed=7) == first
    assert stats.stratified_bootstrap_ci(scores, stats.mean, reps=300, seed=8) != first
    both = stats.stratified_bootstrap_ci({"a": scores, "b": scores + 1}, stats.mean, reps=300, seed=7)
    assert both["a"] == first and both["b"].point == pytest.approx(first.point + 1)


def test_resampling_never_mixes_tasks():
    """Task 0 scores near 0, task 1 near 1000: every resample keeps each column's own values."""
    scores = np.stack([np.arange(5.0), 1000.0 + np.arange(5.0)], axis=1)
    samples = stats.stratified_resample(scores, np.random.default_rng(0), 200)
    assert samples.shape == (200, 5, 2)
    assert set(np.unique(samples[:, :, 0])) <= set(scores[:, 0])
    assert set(np.unique(samples[:, :, 1])) <= set(scores[:, 1])
    # the runs of each task are drawn independently (not the same rows for both tasks)
    assert np.any(samples[:, :, 1] - 1000.0 != samples[:, :, 0])
    # so the per-task mean's interval stays inside its task's range
    point, low, high = stats.stratified_bootstrap_ci(scores, lambda s: s[:, 1].mean(), reps=300)
    assert 1000.0 <= low <= point <= high <= 1004.0


def test_poi_interval_resamples_both_sides():
    x = np.array([0.9, 0.8, 0.7, 0.6, 0.2])
    y = np.array([0.5, 0.4, 0.3, 0.1, 0.85])
    point, low, high = stats.probability_of_improvement_ci(x, y, reps=500, seed=0)
    # x's wins over y: 5 + 4 + 4 + 4 + 1 pairs of 25
    assert point == pytest.approx(stats.probability_of_improvement(x, y)) == pytest.approx(18 / 25)
    assert 0.0 <= low < point < high <= 1.0
    assert stats.probability_of_improvement_ci([2.0, 3.0], [0.0, 1.0], reps=100) == (1.0, 1.0, 1.0)


def test_performance_profile_of_a_hand_case():
    scores = [0.1, 0.5, 0.5, 0.9]
    profile = stats.performance_profile(scores, [0.0, 0.1, 0.5, 0.8, 1.0])
    assert profile.tolist() == [1.0, 0.75, 0.25, 0.25, 0.0]  # strictly above tau
    bands = stats.performance_profile_bands(scores, [0.0, 0.5, 1.0], reps=300)
    assert bands.point.tolist() == [1.0, 0.25, 0.0]
    assert bands.low.tolist()[::2] == [1.0, 0.0] and bands.high.tolist()[::2] == [1.0, 0.0]
    assert bands.low[1] <= 0.25 <= bands.high[1] and bands.low[1] < bands.high[1]


def test_summarize_gives_every_algorithm_and_pair():
    out = stats.summarize({"grpo": [0.5, 0.7, 0.9, 0.6], "ppo": [0.5, 0.3, 0.1, 0.2], "a2c": [0.0, 0.1, 0.0, 0.1]},
                          reps=200, seed=1)
    assert out["algos"]["grpo"]["runs"] == 4 and out["algos"]["grpo"]["tasks"] == 1
    assert out["algos"]["grpo"]["mean"]["point"] == pytest.approx(0.675)
    assert out["algos"]["grpo"]["iqm"]["point"] == pytest.approx(0.65)  # middle two of 0.5, 0.6, 0.7, 0.9
    assert [(p["x"], p["y"]) for p in out["improvement"]] == [("grpo", "ppo"), ("grpo", "a2c"), ("ppo", "a2c")]
    assert out["improvement"][0]["point"] == pytest.approx(15.5 / 16)  # one tie (0.5, 0.5)
    assert out["improvement"][1] == {"x": "grpo", "y": "a2c", "point": 1.0, "low": 1.0, "high": 1.0}
    assert stats.format_interval(out["algos"]["grpo"]["iqm"], ".2f").startswith("0.65 [")


@pytest.mark.parametrize("bad, match", [
    ([], "at least one run"),
    ([1.0, float("nan")], "non-finite value"),
    (np.zeros((2, 2, 2)), r"shape \(2, 2, 2\)"),
])
def test_bad_scores_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        stats.iqm(bad)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="x has 2 tasks and y has 3"):
        stats.probability_of_improvement(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="confidence=1.5"):
        stats.stratified_bootstrap_ci([1.0, 2.0], stats.mean, confidence=1.5)
    with pytest.raises(ValueError, match="reps=0"):
        stats.probability_of_improvement_ci([1.0], [2.0], reps=0)
    with pytest.raises(ValueError, match="taus"):
        stats.performance_profile([1.0], [])
    with pytest.raises(ValueError, match="empty"):
        stats.summarize({})
    with pytest.raises(ValueError, match="scores of 'ppo'"):
        stats.summarize({"grpo": [1.0], "ppo": [float("inf")]})


def test_the_study_table_gives_each_combination_and_pair():
    from marl_grpo.tools.study import aggregate_table

    combo = {"supervision": "process", "advantage_baseline": "mean", "reward_aggregation": "sum_then_normalize"}
    rows = [{"group_mode": "team", **combo, "seeds": 2, "win_rates": [0.5, 0.7]},
            {"group_mode": "branch", **combo, "seeds": 2, "win_rates": [0.5, 0.3]}]
    table = aggregate_table(rows, reps=200)
    team, branch = "team/process/mean/sum_then_normalize", "branch/process/mean/sum_then_normalize"
    assert rows[0]["win_rate_mean"]["point"] == pytest.approx(0.6)
    assert rows[0]["improvement"][branch]["point"] == pytest.approx(3.5 / 4)  # one tie in 4 pairs
    assert rows[1]["improvement"][team]["point"] == pytest.approx(0.5 / 4)
    assert f"| {team} | 2 | 60.0% [" in table and "| 0.88 [" in table


def test_tournament_mean_scores_resample_matches_within_each_opponent():
    from marl_grpo.tools.tournament import PairResult, mean_scores

    blue = np.array([True, True, False, False])
    # a vs b: a wins 3 (two as red), draws 1 -> 3.5 / 4; a vs c: 2 wins, 2 losses -> 0.5; b vs c: 4 draws
    results = {
        (0, 1): PairResult(first_blue=blue, score=np.array([[2, 0], [1, 1], [0, 1], [0, 3]])),
        (0, 2): PairResult(first_blue=blue, score=np.array([[1, 0], [0, 1], [1, 0], [0, 1]])),
        (1, 2): PairResult(first_blue=blue, score=np.zeros((4, 2), dtype=int)),
    }
    rows = mean_scores(results, ["a", "b", "c"], resamples=300, seed=0)
    assert [r["point"] for r in rows] == pytest.approx([(0.875 + 0.5) / 2, (0.125 + 0.5) / 2, (0.5 + 0.5) / 2])
    assert all(r["low"] <= r["point"] <= r["high"] for r in rows)
    a_vs_b = stats.stratified_bootstrap_ci(np.array([[1.0, 0.5, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]]).T, stats.mean, 300)
    assert rows[0] == {"name": "a", **a_vs_b.as_dict()}
    assert mean_scores(results, ["a", "b", "c"], resamples=0, seed=0)[0]["low"] is None
