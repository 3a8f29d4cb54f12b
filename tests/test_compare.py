"""`marl-grpo compare` end to end on a tiny budget, and the statistics of its report."""

import json
import shlex

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from marl_grpo.cli import main
from marl_grpo.rl import PRESETS
from marl_grpo.run.presets import parse_with_preset
from marl_grpo.tools.compare import CompareConfig, compare_preset, mean_ci, run_configs


def test_mean_ci_is_the_student_t_interval():
    mean, half = mean_ci(np.array([0.5, 0.7, 0.9]))
    assert mean == pytest.approx(0.7)
    assert half == pytest.approx(4.303 * 0.2 / np.sqrt(3))  # t_{0.975, 2} * s / sqrt(n), s = 0.2
    mean, half = mean_ci(np.array([[1.0, 2.0], [3.0, 6.0]]))  # seeds x points
    assert mean.tolist() == [2.0, 4.0]
    assert half == pytest.approx([12.706 * np.sqrt(2) / np.sqrt(2), 12.706 * np.sqrt(8) / np.sqrt(2)])
    assert mean_ci(np.array([0.4]))[1] == 0.0


def test_the_comparison_keeps_the_learning_rate_both_algorithms_were_measured_with():
    """The GRPO presets learn at 6e-3, `ppo-2v2` and the README's GRPO-vs-PPO comparison at 1e-3:
    `compare` must not hand PPO the GRPO preset's rate."""
    assert {PRESETS[name].learning_rate for name in ("quick", "2v2", "selfplay", "league-2v2")} == {6e-3}
    assert PRESETS["ppo-2v2"].learning_rate == 1e-3
    runs = run_configs(compare_preset("2v2"))
    assert {r.algo for r in runs} == {"grpo", "ppo"} and {r.learning_rate for r in runs} == {1e-3}


def test_run_configs_share_settings_and_apply_per_algorithm_options(tmp_path):
    cfg = compare_preset("tiny")
    cfg.train.log_dir = str(tmp_path)
    cfg.algo_args["ppo"] = "--critic decentralized --learning-rate 3e-4"
    runs = run_configs(cfg)
    assert [(r.algo, r.seed, r.name) for r in runs] == [
        ("grpo", 1, "grpo_seed1"), ("grpo", 2, "grpo_seed2"), ("ppo", 1, "ppo_seed1"), ("ppo", 2, "ppo_seed2")]
    assert {r.log_dir for r in runs} == {str(tmp_path / "compare-tiny")}
    assert {(r.total_env_steps, r.num_envs, r.team_size, r.opponent) for r in runs} == {(384, 16, 2, "team")}
    assert [r.learning_rate for r in runs] == [1e-3, 1e-3, 3e-4, 3e-4]
    assert [r.critic for r in runs][2:] == ["decentralized"] * 2
    with pytest.raises(ValueError, match="may not change the algorithm"):
        run_configs(CompareConfig(algo_args={"ppo": "--algo grpo"}))
    with pytest.raises(ValueError, match="holds an invalid"):
        run_configs(CompareConfig(algo_args={"grpo": "--no-such-option 3"}))
    with pytest.raises(ValueError, match=r"holds an invalid .*learning_rate=-1.0 is invalid"):
        run_configs(CompareConfig(algo_args={"grpo": "--learning-rate -1"}))
    with pytest.raises(ValueError, match=r"algo_args names \['a2c'\]"):
        run_configs(CompareConfig(algo_args={"a2c": "--seed 3"}))
    with pytest.raises(ValueError, match=r"algos=\('a2c',\) is invalid"):
        run_configs(CompareConfig(algos=("a2c",)))


def test_compare_end_to_end(tmp_path):
    root = tmp_path / "compare-tiny"
    main(["compare", "--preset", "tiny", "--train.log-dir", str(tmp_path), "--jobs", "2", "--train.max-cycles", "16"])

    finals = {}
    for algo in ("grpo", "ppo"):
        for seed in (1, 2):
            run = root / f"{algo}_seed{seed}"
            acc = EventAccumulator(str(run))
            acc.Reload()
            tags = set(acc.Tags()["scalars"])
            assert {"eval/win_rate", "eval/wall_time", "charts/episodic_return", "losses/policy_loss"} <= tags
            assert ("losses/value_loss" in tags) == (algo == "ppo")
            assert [e.step for e in acc.Scalars("eval/win_rate")] == [256, 384]  # eval_every 2, 3 iterations
            finals.setdefault(algo, []).append(acc.Scalars("eval/win_rate")[-1].value)
            result = json.loads((run / "result.json").read_text())
            assert result["global_step"] == 384 and result["config"]["seed"] == seed and result["peak_memory_mb"] > 10

    image = Image.open(root / "compare.png")
    assert image.size[0] > 1000 and len(np.unique(np.asarray(image.convert("L")))) > 10  # drawn, not blank
    summary = json.loads((root / "compare.json").read_text())
    for algo in ("grpo", "ppo"):
        assert summary[algo]["seeds"] == 2
        assert summary[algo]["final_win_rate"] == pytest.approx(np.mean(finals[algo]))
    assert summary["ppo"]["parameters"]["critic_parameters"] == 27 * 128 + 128 + 128 * 128 + 128 + 128 + 1
    assert "critic_parameters" not in summary["grpo"]["parameters"]
    table = (root / "compare.md").read_text()
    for row in ("final win rate", "env steps to 50% wins", "wall time to 80% wins", "agent-steps/s",
                "parameters", "peak memory"):
        assert row in table

    # finished runs are skipped when the command runs again; the report is redrawn the same
    stamp = (root / "ppo_seed1" / "result.json").stat().st_mtime_ns
    main(["compare", "--preset", "tiny", "--train.log-dir", str(tmp_path), "--train.max-cycles", "16"])
    assert (root / "ppo_seed1" / "result.json").stat().st_mtime_ns == stamp
    assert json.loads((root / "compare.json").read_text()) == summary
    main(["compare", "--preset", "tiny", "--train.log-dir", str(tmp_path), "--report-only"])
    assert json.loads((root / "compare.json").read_text()) == summary


def test_dry_run_prints_one_train_command_per_run(tmp_path, capsys):
    main(["compare", "--preset", "tiny", "--train.log-dir", str(tmp_path), "--dry-run",
          "--algo-args.ppo=--critic decentralized --clip-eps-high 0.3"])
    lines = capsys.readouterr().out.strip().splitlines()
    cfg = compare_preset("tiny")
    cfg.train.log_dir = str(tmp_path)
    cfg.algo_args["ppo"] = "--critic decentralized --clip-eps-high 0.3"
    runs = run_configs(cfg)
    assert len(lines) == len(runs) == 4 and not (tmp_path / "compare-tiny").exists()  # nothing ran
    for line, run in zip(lines, runs):
        args = shlex.split(line)
        assert args[:2] == ["marl-grpo", "train"]
        assert parse_with_preset(args[2:], PRESETS, "2v2", "marl-grpo train", "") == run  # the same run


def test_a_preset_copy_is_independent_of_the_preset():
    cfg = compare_preset("tiny")
    cfg.algo_args["ppo"] = "--critic decentralized"
    cfg.train.log_dir = "elsewhere"
    fresh = compare_preset("tiny")
    assert fresh.algo_args["ppo"] == "--update-epochs 4" and fresh.train.log_dir == "runs"


def test_compare_runs_both_algorithms_against_a_league(tmp_path, capsys):
    main(["compare", "--preset", "tiny", "--seeds", "1", "--train.log-dir", str(tmp_path), "--train.max-cycles", "16",
          "--train.opponent", "league", "--train.league-snapshot-every", "1"])
    for algo in ("grpo", "ppo"):
        run = tmp_path / "compare-tiny" / f"{algo}_seed1"
        result = json.loads((run / "result.json").read_text())
        assert result["config"]["opponent"] == "league" and result["global_step"] == 384
        assert sorted(p.name for p in (run / "league").iterdir()) == [f"snapshot-00000{i}" for i in (1, 2, 3)]
        acc = EventAccumulator(str(run))
        acc.Reload()
        assert len(acc.Scalars("league/elo")) == 3 and "eval/win_rate" in acc.Tags()["scalars"]


# win rates of fake runs, evaluated at env steps 100, 200, 300, 400 (values exact in float32)
FAKE_WINS = {
    "grpo": [[0.25, 0.5, 0.75, 1.0], [0.0, 0.25, 0.5, 0.75], [0.125, 0.5, 0.5, 0.875], [0.0, 0.0, 0.25, 0.25]],
    "ppo": [[0.0, 0.25, 0.5, 0.5], [0.125, 0.125, 0.25, 0.75], [0.0, 0.5, 0.25, 0.375]],
}
FAKE_WALL_PER_EVAL = {"grpo": 10.0, "ppo": 20.0}  # seconds between evaluations: PPO runs half as fast


def _fake_runs(root):
    from torch.utils.tensorboard import SummaryWriter

    for algo, seeds in FAKE_WINS.items():
        for seed, wins in enumerate(seeds, 1):
            run = root / f"{algo}_seed{seed}"
            writer = SummaryWriter(str(run))
            for k, win in enumerate(wins, 1):
                writer.add_scalar("eval/win_rate", win, 100 * k)
                writer.add_scalar("eval/wall_time", FAKE_WALL_PER_EVAL[algo] * k, 100 * k)
            writer.close()
            (run / "result.json").write_text(json.dumps({
                "global_step": 400, "wall_time": FAKE_WALL_PER_EVAL[algo] * 4, "agent_steps_per_s": 1000.0,
                "peak_memory_mb": 100.0, "policy_parameters": 10}))


def test_the_report_gives_iqm_and_probability_of_improvement_at_each_budget_point(tmp_path):
    from marl_grpo.tools import stats
    from marl_grpo.tools.compare import BOOTSTRAP_REPS, write_report

    root = tmp_path / "compare-fake"
    _fake_runs(root)
    write_report(root, ("grpo", "ppo"))
    summary = json.loads((root / "compare.json").read_text())
    grpo, ppo = summary["grpo"], summary["ppo"]

    # final win rates: GRPO 1, 0.75, 0.875, 0.25 -> IQM = mean(0.75, 0.875), mean 0.71875
    assert grpo["final_win_rate_iqm"]["point"] == pytest.approx(0.8125)
    assert grpo["final_win_rate_mean"]["point"] == pytest.approx(0.71875)
    expected = stats.stratified_bootstrap_ci([1.0, 0.75, 0.875, 0.25], stats.iqm, BOOTSTRAP_REPS, seed=0)
    assert grpo["final_win_rate_iqm"] == pytest.approx(expected.as_dict())
    assert ppo["final_win_rate_iqm"]["point"] == pytest.approx(1.625 / 3)  # 3 runs: nothing trimmed
    # budget points: env steps 100, 200, 400; wall time 10 s, 20 s, 40 s (the shortest run's last evaluation)
    assert [grpo["at"][k]["x"] for k in ("steps_25%", "steps_50%", "steps_100%")] == [100, 200, 400]
    assert [grpo["at"][k]["x"] for k in ("wall_25%", "wall_50%", "wall_100%")] == [10, 20, 40]
    assert grpo["at"]["steps_50%"]["iqm"]["point"] == pytest.approx(0.375)  # 0, 0.25, 0.5, 0.5
    assert grpo["at"]["wall_100%"]["iqm"]["point"] == pytest.approx(0.8125)
    assert ppo["at"]["wall_100%"]["mean"]["point"] == pytest.approx((0.25 + 0.125 + 0.5) / 3)  # PPO at step 200
    assert ppo["at"]["wall_25%"] == {"x": 10, "runs": 0}  # PPO's first evaluation is at 20 s
    # P(GRPO > PPO), pairs counted by hand (ties 1/2) out of 4 x 3
    poi = grpo["improvement"]["ppo"]
    assert poi["steps_100%"]["point"] == pytest.approx(8.5 / 12)
    assert poi["steps_25%"]["point"] == pytest.approx(7.5 / 12)
    assert poi["wall_50%"]["point"] == pytest.approx(10 / 12)
    assert poi["wall_100%"]["point"] == pytest.approx(10.5 / 12)
    assert poi["wall_25%"] is None
    final = stats.probability_of_improvement_ci([w[-1] for w in FAKE_WINS["grpo"]], [w[-1] for w in FAKE_WINS["ppo"]],
                                                BOOTSTRAP_REPS, seed=0)
    assert poi["steps_100%"] == pytest.approx(final.as_dict())
    reverse = ppo["improvement"]["grpo"]["steps_100%"]
    assert reverse == pytest.approx({"point": 1 - final.point, "low": 1 - final.high, "high": 1 - final.low})
    for algo in ("grpo", "ppo"):
        for entry in summary[algo]["at"].values():
            if entry["runs"]:
                assert entry["iqm"]["low"] <= entry["iqm"]["point"] <= entry["iqm"]["high"]

    table = (root / "compare.md").read_text()
    assert "final win rate, IQM [95% bootstrap CI] | 81.2% [" in table
    assert "| 100% of env steps (400) | 81.2% [" in table and "P(GRPO > PPO)" in table
    assert "| 25% of wall time (0.2 min) | 6.2% [0.0%, 25.0%] | n/a |" in table
    assert "final win rate (mean ± 95% CI)" in table  # today's table is kept
    image = Image.open(root / "compare_profile.png")
    assert len(np.unique(np.asarray(image.convert("L")))) > 10
    assert (root / "compare.png").exists()
