"""`marl-grpo compare` on another env than soccer: the runs compared on `eval/return`."""

import dataclasses
import json
import re
import shlex

import numpy as np
import pytest
import torch
from PIL import Image

from marl_grpo.cli import main
from marl_grpo.rl import PRESETS
from marl_grpo.run.presets import parse_with_preset
from marl_grpo.tools import stats
from marl_grpo.tools.compare import (BOOTSTRAP_REPS, COMPARE_PRESETS, compare_preset, read_scalars, run_configs,
                                     write_report)

SPREAD = "pettingzoo:mpe2.simple_spread_v3:parallel_env"
TINY_SPREAD = ["--train.env", SPREAD, "--train.env-kwargs", "N=2", "max_cycles=10", "--train.group-mode", "episode",
               "--train.num-envs", "8", "--train.group-size", "4", "--train.hidden", "16", "--train.eval-matches", "4",
               "--train.total-env-steps", "240", "--train.eval-every", "1", "--seeds", "2", "--name", "spread"]


def test_compare_on_another_env_reports_the_final_returns_logged(tmp_path, capsys):
    root = tmp_path / "compare-spread"
    main(["compare", "--train.log-dir", str(tmp_path), *TINY_SPREAD])
    out = capsys.readouterr().out

    finals = {}
    for algo in ("grpo", "ppo"):
        for seed in (1, 2):
            run = root / f"{algo}_seed{seed}"
            result = json.loads((run / "result.json").read_text())
            assert result["config"]["env"] == SPREAD and result["config"]["seed"] == seed
            steps, returns = read_scalars(run, "eval/return")
            assert steps.size >= 1 and read_scalars(run, "eval/win_rate")[0].size == 0  # no win rate off soccer
            finals.setdefault(algo, []).append(returns[-1])
    summary = json.loads((root / "compare.json").read_text())
    for algo in ("grpo", "ppo"):
        row = summary[algo]
        assert row["seeds"] == 2 and row["final_returns"] == pytest.approx(finals[algo])
        assert row["final_return"] == pytest.approx(np.mean(finals[algo]))
        assert row["final_return_iqm"] == pytest.approx(
            stats.stratified_bootstrap_ci(finals[algo], stats.iqm, BOOTSTRAP_REPS).as_dict())
        assert not [k for k in row if "win" in k or k.startswith(("steps_to", "wall_to"))]
        assert set(row["at"]) == {f"{axis}_{f}%" for axis in ("steps", "wall") for f in (25, 50, 100)}
    table = (root / "compare.md").read_text()
    rows = [line.strip("| ").split(" | ") for line in table.splitlines() if line.startswith("| final return per")]
    assert rows == [["final return per seed", *(", ".join(f"{v:.2f}" for v in finals[a]) for a in ("grpo", "ppo"))]]
    assert "final return (mean ± 95% CI)" in table and "the seeds' returns at a fraction" in table
    assert "wins" not in table and not re.search(r"\d\.\d+%", table)  # no win thresholds, no percentages
    assert f"grpo: final return {np.mean(finals['grpo']):.2f} ± " in out
    for image in ("compare.png", "compare_profile.png"):
        assert len(np.unique(np.asarray(Image.open(root / image).convert("L")))) > 10  # drawn, not blank

    # the runs' own env decides the metric of a report redrawn without --train.env
    main(["compare", "--name", "spread", "--train.log-dir", str(tmp_path), "--report-only"])
    assert json.loads((root / "compare.json").read_text()) == summary

    # finished runs (3 iterations of the env's own 10-step episodes) are skipped when the command runs
    # again, and one whose checkpoint holds fewer is resumed (the 300-step soccer default would count 1)
    stamps = {run.name: (run / "result.json").stat().st_mtime_ns for run in root.glob("*_seed*")}
    state_file = root / "grpo_seed1" / "checkpoint" / "trainer_state.pt"
    state = torch.load(state_file, weights_only=False)
    state["iteration"] = 2
    torch.save(state, state_file)
    main(["compare", "--train.log-dir", str(tmp_path), *TINY_SPREAD])
    rerun = {name for name, stamp in stamps.items() if (root / name / "result.json").stat().st_mtime_ns != stamp}
    assert rerun == {"grpo_seed1"}
    assert json.loads((root / "grpo_seed1" / "result.json").read_text())["global_step"] == 240


def test_dry_run_passes_the_env_and_its_settings_to_every_train_command(tmp_path, capsys):
    argv = ["--train.log-dir", str(tmp_path), "--dry-run", *TINY_SPREAD, "--train.max-cycles", "7"]
    main(["compare", *argv])
    lines = capsys.readouterr().out.strip().splitlines()
    cfg = parse_with_preset(argv, COMPARE_PRESETS, "2v2", "marl-grpo compare", "")
    runs = run_configs(cfg)
    assert len(lines) == len(runs) == 4 and not (tmp_path / "compare-spread").exists()  # nothing ran
    for line, run in zip(lines, runs):
        args = shlex.split(line)
        assert "--env pettingzoo:mpe2.simple_spread_v3:parallel_env --env-kwargs N=2 max_cycles=10" in line
        parsed = parse_with_preset(args[2:], PRESETS, "2v2", "marl-grpo train", "")  # not refused
        assert (parsed.env, parsed.env_kwargs, parsed.max_cycles) == (SPREAD, ("N=2", "max_cycles=10"), 7)
        assert "max_cycles" in parsed.given and "max_cycles" in run.given  # the time limit the user set is kept
        if run.algo == "ppo":  # the shared GRPO group settings, which PPO does not read, are left out
            assert "--group-size" not in args and "--group-mode" not in args
            run = dataclasses.replace(run, group_size=PRESETS["2v2"].group_size,
                                      group_mode=PRESETS["2v2"].group_mode)
        assert parsed == run  # the same run


def test_a_time_limit_given_at_the_presets_value_still_overrides_the_tasks_own(tmp_path, capsys):
    value = str(PRESETS["2v2"].max_cycles)
    argv = ["--train.log-dir", str(tmp_path), "--dry-run", *TINY_SPREAD, "--train.max-cycles", value]
    main(["compare", *argv])
    lines = capsys.readouterr().out.strip().splitlines()
    runs = run_configs(parse_with_preset(argv, COMPARE_PRESETS, "2v2", "marl-grpo compare", ""))
    for line, run in zip(lines, runs):
        assert "max_cycles" in run.given and f"--max-cycles {value}" in line
        parsed = parse_with_preset(shlex.split(line)[2:], PRESETS, "2v2", "marl-grpo train", "")
        assert "max_cycles" in parsed.given
    # not given: the runs keep the task's own time limit
    runs = run_configs(parse_with_preset(argv[:-2], COMPARE_PRESETS, "2v2", "marl-grpo compare", ""))
    assert all("max_cycles" not in run.given for run in runs)


def test_vmas_settings_reach_the_runs_and_soccer_options_are_refused_with_another_env(tmp_path, capsys):
    main(["compare", "--name", "nav", "--train.env", "vmas:navigation", "--train.env-kwargs", "n_agents=2",
          "--dry-run"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6 and all("--env vmas:navigation --env-kwargs n_agents=2" in line for line in lines)
    # compare's own train defaults (the 2v2 preset's soccer settings) are not the user's: not refused
    cfg = compare_preset("2v2")
    cfg.train.env, cfg.train.env_kwargs = "vmas:navigation", ("n_agents=2",)  # as the command line sets them
    runs = run_configs(cfg)
    assert {(r.env, r.env_kwargs, r.compile_bots) for r in runs} == {("vmas:navigation", ("n_agents=2",), True)}
    cfg.train.opponent = "self"
    with pytest.raises(ValueError, match="--opponent self has no effect with --env vmas:navigation"):
        run_configs(cfg)
    with pytest.raises(SystemExit, match="compare: --team-size 3 has no effect with --env vmas:navigation"):
        main(["compare", "--train.env", "vmas:navigation", "--train.team-size", "3", "--dry-run"])
    with pytest.raises(SystemExit, match="compare: --env-kwargs .* has no effect with --env soccer"):
        main(["compare", "--train.env-kwargs", "n_agents=2", "--dry-run"])


# mean episode returns of fake runs, evaluated at env steps 100, 200, 300 (values exact in float32)
FAKE_RETURNS = {"grpo": [[-30.0, -20.0, -12.5], [-28.0, -16.0, -10.0], [-31.0, -25.0, -20.5]],
                "ppo": [[-29.0, -24.0, -18.0], [-30.0, -27.5, -26.0]]}


def _fake_return_runs(root, env="vmas:navigation"):
    from torch.utils.tensorboard import SummaryWriter

    for algo, seeds in FAKE_RETURNS.items():
        for seed, returns in enumerate(seeds, 1):
            run = root / f"{algo}_seed{seed}"
            writer = SummaryWriter(str(run))
            for k, value in enumerate(returns, 1):
                writer.add_scalar("eval/return", value, 100 * k)
                writer.add_scalar("eval/wall_time", 10.0 * k, 100 * k)
            writer.close()
            (run / "result.json").write_text(json.dumps({
                "global_step": 300, "wall_time": 30.0, "agent_steps_per_s": 1000.0, "peak_memory_mb": 100.0,
                "policy_parameters": 10, "config": {"env": env, "seed": seed}}))


def test_the_return_report_has_scale_free_statistics_and_no_win_thresholds(tmp_path):
    root = tmp_path / "compare-fake"
    _fake_return_runs(root)
    summary = write_report(root, ("grpo", "ppo"))  # the metric from the runs' env
    grpo, ppo = summary["grpo"], summary["ppo"]
    assert grpo["final_returns"] == [-12.5, -10.0, -20.5] and ppo["final_returns"] == [-18.0, -26.0]
    assert grpo["final_return"] == pytest.approx(-43.0 / 3)
    assert grpo["final_return_mean"]["point"] == pytest.approx(-43.0 / 3)
    assert grpo["at"]["steps_50%"]["x"] == 150 and grpo["at"]["steps_50%"]["mean"]["point"] == pytest.approx(
        np.mean([-25.0, -22.0, -28.0]))  # interpolated between the evaluations at 100 and 200
    # P(GRPO > PPO) at the end: -12.5 and -10 beat both PPO runs, -20.5 beats -26 only: 5 of 6 pairs
    assert grpo["improvement"]["ppo"]["steps_100%"]["point"] == pytest.approx(5 / 6)
    assert ppo["improvement"]["grpo"]["steps_100%"]["point"] == pytest.approx(1 / 6)
    table = (root / "compare.md").read_text()
    assert "| final return per seed | -12.50, -10.00, -20.50 | -18.00, -26.00 |" in table
    assert "| final return (mean ± 95% CI) | -14.33 ± " in table
    assert "| 100% of env steps (300) | -14.33 [-20.50, -10.00] | -22.00 [" in table  # IQM of 3 runs: the mean
    assert "wins" not in table
    assert json.loads((root / "compare.json").read_text()) == summary


def test_runs_of_several_envs_are_not_compared_together(tmp_path):
    root = tmp_path / "compare-mixed"
    _fake_return_runs(root)
    result = root / "ppo_seed2" / "result.json"
    result.write_text(result.read_text().replace("vmas:navigation", "vmas:balance"))
    with pytest.raises(ValueError, match=r"several envs, \['vmas:balance', 'vmas:navigation'\]"):
        write_report(root, ("grpo", "ppo"))
