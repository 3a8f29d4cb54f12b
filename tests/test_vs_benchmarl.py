"""`scripts/vs_benchmarl.py`: the plan's commands and the report read from finished runs (no
BenchMARL needed: its runs are faked by their `curve.json`, ours by their event files)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from marl_grpo.rl import PRESETS
from marl_grpo.run.presets import parse_with_preset
from helpers import load_script


@pytest.fixture(scope="module")
def vs():
    return load_script("vs_benchmarl")


def fake_benchmarl(out: Path, returns: list[float], seconds: list[float]) -> None:
    out.mkdir(parents=True)
    curve = [{"frames": 120000 * (i + 1), "seconds": s, "return": r} for i, (r, s) in enumerate(zip(returns, seconds))]
    (out / "curve.json").write_text(json.dumps({"wall_time": seconds[-1], "curve": curve}))


def fake_ours(out: Path, returns: list[float], seconds: list[float], most_likely: float) -> None:
    out.mkdir(parents=True)
    with SummaryWriter(str(out)) as writer:
        for i, (r, s) in enumerate(zip(returns, seconds)):
            writer.add_scalar("eval/return", r, 120000 * (i + 1))
            writer.add_scalar("eval/wall_time", s, 120000 * (i + 1))
    (out / "result.json").write_text("{}")
    (out / "most_likely.json").write_text(json.dumps({"return": most_likely, "episodes": 200}))


def test_our_commands_are_valid_train_commands_with_the_tasks_settings(vs, tmp_path):
    args = vs.argparse.Namespace(tasks=["navigation", "balance"], seeds=2, frames=240000, out=str(tmp_path),
                                 benchmarl_python="python", marl_grpo="marl-grpo")
    runs = vs.plan(args)
    assert len(runs) == 2 * 4 * 2
    for out, command in runs:
        task, algo = out.parts[-3], out.parts[-2]
        if algo in vs.BENCHMARL_ALGOS:
            assert command[-6:] == ["--run-benchmarl", algo, task, out.name[4:], "240000", str(out)]
            continue
        cfg = parse_with_preset(command[2:], PRESETS, "2v2", "marl-grpo train", "")  # accepted as it is
        assert (cfg.env, cfg.total_env_steps, cfg.max_cycles) == (f"vmas:{task}", 240000, 100)
        assert cfg.num_envs * cfg.branch_horizon == vs.FRAMES_PER_BATCH  # BenchMARL's frames per batch
        assert dict(kv.split("=") for kv in cfg.env_kwargs) == {k: str(v) for k, v in vs.TASK_KWARGS[task].items()}
        assert cfg.algo == algo
        if algo == "grpo":
            assert shlex.join(vs.GRPO_OPTIONS[task]) in shlex.join(command)


def test_report_reads_every_run_and_compares_ours_with_mappo(vs, tmp_path):
    root = tmp_path / "navigation"
    for seed, (m, p) in enumerate([(0.8, 0.9), (1.0, 0.95), (0.92, 0.85)], start=1):
        fake_benchmarl(root / "mappo" / f"seed{seed}", [0.5, m], [600.0, 1200.0])
        fake_ours(root / "ppo" / f"seed{seed}", [0.6, p], [30.0, 60.0], most_likely=p + 0.01)
    # ippo and grpo not run: left out of the table
    args = vs.argparse.Namespace(tasks=["navigation"], seeds=3, frames=240000, out=str(tmp_path), marl_grpo="unused")
    table = vs.report(args)
    rows = {line.split(" | ")[1]: line for line in table.splitlines() if line.startswith("| navigation")}
    assert set(rows) == {"mappo", "ppo"}
    assert "| 0.80, 1.00, 0.92 |" in rows["mappo"] and "| 20.0 |" in rows["mappo"]  # 1200 s = 20 minutes
    assert "| 0.90, 0.95, 0.85 |" in rows["ppo"] and "0.91, 0.96, 0.86" in rows["ppo"] and "| 1.0 |" in rows["ppo"]
    # P(ppo > mappo) over the 3 x 3 pairs: 0.9 beats 0.8; 0.95 beats 0.8 and 0.92; 0.85 beats 0.8 -> 4 / 9
    assert "navigation, final return: P(ppo > mappo) = 0.44" in table
    # with the most likely actions (0.91, 0.96, 0.86) against MAPPO's own (its final evaluation): the same pairs
    assert "navigation, most likely actions: P(ppo > mappo) = 0.44" in table
    saved = json.loads((tmp_path / "vs_benchmarl.json").read_text())["results"]["navigation"]
    assert saved["ppo"]["most_likely_returns"] == pytest.approx([0.91, 0.96, 0.86])
    assert (tmp_path / "vs_benchmarl.png").stat().st_size > 0 and (tmp_path / "vs_benchmarl.md").read_text() == table + "\n"
