"""End to end: a tiny GRPO run through the real CLI, then eval, watch --record and resume."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from marl_grpo.agents import SoccerPolicy
from marl_grpo.cli import main
from marl_grpo.envs import SoccerConfig
from marl_grpo.rl import evaluate, preset
from marl_grpo.run.checkpoint import load_policy

REQUIRED_TAGS = {
    "grpo/reward_std", "grpo/frac_zero_std", "grpo/group_size",
    "losses/policy_loss", "losses/entropy", "losses/approx_kl", "losses/clipfrac",
    "charts/episodic_return", "charts/SPS",
    "eval/win_rate", "eval/draw_rate", "eval/goal_diff",
}


def _scalars(run_dir: Path) -> dict[str, list]:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def test_train_eval_watch_resume(tmp_path, capsys, device):
    run = tmp_path / "runs"
    main(["train", "--preset", "tiny", "--log-dir", str(run), "--seed", "1", "--max-cycles", "16", "--device", device])
    ckpt = run / "tiny" / "checkpoint"
    assert {p.name for p in ckpt.iterdir()} == {"policy.safetensors", "config.json", "trainer_state.pt", "COMPLETE"}

    # the parameters changed from their initialisation (which a run with learning rate 0 keeps,
    # which shows that `fresh` really is the initialisation; built on the CPU, as `load_file` reads)
    torch.manual_seed(1)
    fresh = SoccerPolicy(SoccerConfig(team_size=2), arch="mlp", hidden=32, device="cpu").state_dict()
    main(["train", "--preset", "tiny", "--log-dir", str(tmp_path / "lr0"), "--seed", "1", "--max-cycles", "16",
          "--learning-rate", "0", "--total-env-steps", "128", "--device", device])
    frozen = load_file(str(tmp_path / "lr0" / "tiny" / "checkpoint" / "policy.safetensors"))
    assert all(torch.equal(v, frozen[k]) for k, v in fresh.items())
    trained = load_file(str(ckpt / "policy.safetensors"))
    changed = [k for k, v in fresh.items() if not torch.equal(v, trained[k])]
    assert len(changed) == len(fresh), f"only {changed} changed"

    scalars = _scalars(run / "tiny")
    missing = REQUIRED_TAGS - set(scalars)
    assert not missing, f"event file lacks {sorted(missing)}"
    steps = [e.step for e in scalars["losses/policy_loss"]]
    assert steps == [128, 256, 384]  # 16 matches x 8 steps per iteration, 3 iterations
    # the logged evaluation is what `evaluate` gives for the saved policy (same seeds, same figures)
    policy, _ = load_policy(ckpt, device=device)
    again = evaluate(policy, preset("tiny").env_kwargs() | {"max_cycles": 16}, "team", 1.0, 4)
    assert scalars["eval/win_rate"][-1].value == pytest.approx(again["eval/win_rate"])
    assert scalars["eval/goal_diff"][-1].value == pytest.approx(again["eval/goal_diff"])

    # eval and watch --record read the checkpoint
    capsys.readouterr()
    main(["eval", str(ckpt), "--matches", "4", "--opponent", "random", "--device", device])
    result = evaluate(policy, preset("tiny").env_kwargs() | {"max_cycles": 16}, "random", 1.0, 4)
    assert capsys.readouterr().out.splitlines()[-1].split() == [
        "win", f"{result['eval/win_rate']:.1%}", "draw", f"{result['eval/draw_rate']:.1%}",
        "loss", f"{result['eval/loss_rate']:.1%}", "goal", "difference", f"{result['eval/goal_diff']:+.2f}",
        "per", "match"]
    video = tmp_path / "match.gif"
    main(["watch", str(ckpt), "--record", str(video), "--opponent", "chaser", "--device", device])
    assert video.stat().st_size > 1000

    # starting the same run again without --resume is refused (no silent overwrite)
    with pytest.raises(SystemExit, match="--resume"):
        main(["train", "--preset", "tiny", "--log-dir", str(run), "--max-cycles", "16", "--device", device])

    # --resume continues from the saved step: two more iterations, logged at steps 512 and 640
    main(["train", "--preset", "tiny", "--log-dir", str(run), "--max-cycles", "16", "--resume",
          "--total-env-steps", str(128 * 5), "--device", device])
    steps = sorted({e.step for e in _scalars(run / "tiny")["losses/policy_loss"]})
    assert steps == [128, 256, 384, 512, 640]


def test_bad_input_fails_fast(tmp_path):
    with pytest.raises(SystemExit, match="unknown preset 'nope'"):
        main(["train", "--preset", "nope"])
    with pytest.raises(SystemExit, match="no checkpoint"):
        main(["eval", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="group_mode='branch\\+episode' is invalid"):
        main(["train", "--preset", "tiny", "--log-dir", str(tmp_path), "--group-mode", "branch+episode"])
    with pytest.raises(SystemExit, match="multiple of group_size"):
        main(["train", "--preset", "tiny", "--log-dir", str(tmp_path), "--num-envs", "10"])
    with pytest.raises(SystemExit):
        main(["train", "--preset", "tiny", "--no-such-option", "1"])


def test_checkpoint_from_another_team_size_is_refused(tmp_path, device):
    run = tmp_path / "runs"
    main(["train", "--preset", "tiny", "--log-dir", str(run), "--max-cycles", "16", "--total-env-steps", "128",
          "--device", device])
    with pytest.raises(SystemExit, match="width 35 .* width 46"):
        main(["eval", str(run / "tiny" / "checkpoint"), "--team-size", "3", "--matches", "2", "--device", device])
