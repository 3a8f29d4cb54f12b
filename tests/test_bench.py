"""`marl-grpo bench env`: interleaved timing against a peer and the median / spread of the pair
ratios; `marl-grpo bench train`: the loop's throughput, its time split and the update cost."""

import statistics

import pytest

from marl_grpo.envs import soccer_v0
from marl_grpo.rl import TrainConfig
from marl_grpo.tools import bench


def fake_rates(name: str, values: list[float], calls: list[str]):
    it = iter(values)

    def run() -> float:
        calls.append(name)
        return next(it)

    return run


def test_interleaved_ratio_alternates_and_takes_median_of_pair_ratios():
    calls: list[str] = []
    # the first value of each side is the warm-up and must be ignored
    ours = fake_rates("ours", [1.0, 10.0, 30.0, 20.0, 40.0], calls)
    peer = fake_rates("peer", [99.0, 5.0, 10.0, 4.0, 8.0], calls)
    stats = bench.interleaved_ratio(ours, peer, repeats=4)
    assert calls == ["ours", "peer"] * 5
    ratios = [10.0 / 5.0, 30.0 / 10.0, 20.0 / 4.0, 40.0 / 8.0]  # 2, 3, 5, 5
    assert stats["ratio_median"] == pytest.approx(statistics.median(ratios)) == pytest.approx(4.0)
    assert stats["ratio_min"] == pytest.approx(2.0) and stats["ratio_max"] == pytest.approx(5.0)
    assert stats["ours"] == pytest.approx(25.0) and stats["peer"] == pytest.approx(6.5)


def test_median_of_pair_ratios_is_not_ratio_of_medians():
    """A load spike hitting one pair moves both sides; the pair ratio stays put."""
    calls: list[str] = []
    ours = fake_rates("ours", [0.0, 10.0, 2.0, 10.0], calls)
    peer = fake_rates("peer", [1.0, 5.0, 1.0, 5.0], calls)
    stats = bench.interleaved_ratio(ours, peer, repeats=3)
    assert stats["ratio_min"] == stats["ratio_max"] == stats["ratio_median"] == pytest.approx(2.0)


def test_interleaved_ratio_rejects_no_repeats():
    with pytest.raises(ValueError):
        bench.interleaved_ratio(lambda: 1.0, lambda: 1.0, repeats=0)


def test_run_env_bench_reports_interleaved_ratios(monkeypatch):
    """run_env_bench with fake runners: the ratio keys and the printed spread, peers in the same order."""
    calls: list[str] = []
    monkeypatch.setattr(bench, "vec_env_runner", lambda *a, **k: fake_rates("vec", [1.0, 8.0, 9.0, 10.0], calls))
    monkeypatch.setattr(bench, "vmas_football_runner", lambda *a, **k: fake_rates("vmas", [1.0, 2.0, 3.0, 2.0], calls))
    runners = iter([fake_rates("pz", [1.0, 6.0, 6.0, 6.0], calls), fake_rates("mpe2", [1.0, 3.0, 2.0, 3.0], calls)])
    monkeypatch.setattr(bench, "pettingzoo_runner", lambda *a, **k: next(runners))
    monkeypatch.setattr(bench, "_installed", lambda module: True)
    cfg = bench.EnvBenchConfig(repeats=3, compile=False, sweep=False)
    results = bench.run_env_bench(cfg)
    assert calls == ["vec", "vmas"] * 4 + ["pz", "mpe2"] * 4
    assert results["vmas_ratio_median"] == pytest.approx(4.0)  # 8/2, 9/3, 10/2
    assert results["vmas_ratio_min"] == pytest.approx(3.0) and results["vmas_ratio_max"] == pytest.approx(5.0)
    assert results["vec_3v3"] == pytest.approx(9.0) and results["vmas_football_3v3"] == pytest.approx(2.0)
    assert results["mpe2_ratio_median"] == pytest.approx(2.0)  # 6/3, 6/2, 6/3
    assert results["mpe2_ratio_min"] == pytest.approx(2.0) and results["mpe2_ratio_max"] == pytest.approx(3.0)


def test_run_env_bench_without_peers(monkeypatch):
    monkeypatch.setattr(bench, "vec_env_runner", lambda *a, **k: fake_rates("vec", [1.0, 3.0, 4.0, 5.0], []))
    monkeypatch.setattr(bench, "pettingzoo_runner", lambda *a, **k: fake_rates("pz", [1.0, 7.0, 7.0, 7.0], []))
    monkeypatch.setattr(bench, "_installed", lambda module: False)
    results = bench.run_env_bench(bench.EnvBenchConfig(repeats=3, compile=False, sweep=False))
    assert results == {"vec_3v3": 4.0, "pz_2v2": 7.0}


def test_real_runners_step(monkeypatch):
    """The real runners build and step the envs (a few steps only)."""
    rate = bench.vec_env_runner(1, num_envs=2, steps=2)()
    assert rate > 0
    assert bench.pettingzoo_runner(lambda: soccer_v0.parallel_env(team_size=1, max_cycles=3), steps=5)() > 0


TRAIN_KEYS = {"agent_steps_per_s", "learner_agent_steps_per_s", "update_ms", "actor_parameters",
              "rollout_fraction", "advantages_fraction", "update_fraction"}


def test_bench_train_reports_update_cost(device):
    configs = {algo: TrainConfig(algo=algo, num_envs=64, threads=1, update_epochs=1, device=device, seed=0)
               for algo in ("grpo", "ppo")}
    results = {algo: bench.run_train_bench(bench.TrainBenchConfig(iterations=1, train=cfg))
               for algo, cfg in configs.items()}
    assert set(results["grpo"]) == TRAIN_KEYS and set(results["ppo"]) == TRAIN_KEYS | {"critic_parameters"}
    # 27 -> 128 -> 128 -> 1, the critic of test_ppo_ignores_groups_and_counts_parameters
    assert results["ppo"]["critic_parameters"] == 27 * 128 + 128 + 128 * 128 + 128 + 128 + 1
    assert results["ppo"]["actor_parameters"] == results["grpo"]["actor_parameters"]
    for algo, result in results.items():
        parts = [result[f"{k}_fraction"] for k in ("rollout", "advantages", "update")]
        assert sum(parts) == pytest.approx(1.0) and min(parts) > 0  # the split covers the whole iteration
        assert result["update_ms"] > 0
        # blue learns against the team bot: half of the 2v2 players' steps are the learner's
        assert result["learner_agent_steps_per_s"] == pytest.approx(result["agent_steps_per_s"] / 2)
    assert configs["ppo"].segment_len == configs["grpo"].segment_len == 32  # branch segments, PPO's rollout


def test_bench_train_versus_eager_interleaves_the_eager_loop(monkeypatch):
    """`--versus-eager` times the same loop with eager bots and env, iteration by iteration beside
    the main one (the bot build is faked here: the plumbing is under test)."""
    import marl_grpo.envs.bots as bots

    calls = []
    monkeypatch.setattr(bots, "_compiled", lambda cls: calls.append(cls) or cls.decide)
    result = bench.run_train_bench(bench.TrainBenchConfig(iterations=2, versus_eager=True, train=TrainConfig(
        num_envs=64, threads=1, update_epochs=1, device="cpu", seed=0, compile_bots=True)))
    assert set(result) == TRAIN_KEYS | {"eager_agent_steps_per_s"}
    assert result["eager_agent_steps_per_s"] > 0 and result["agent_steps_per_s"] > 0
    assert calls, "the main loop's bots go through the (faked) compiled build"
    with pytest.raises(ValueError, match="versus_eager compares against the eager bots and env"):
        bench.TrainBenchConfig(versus_eager=True).validate()
