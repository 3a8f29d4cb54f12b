"""End to end: a tiny GRPO run through the real CLI, then eval, watch --record and resume."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from pathlib import Path

import dataclasses
import re

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from marl_grpo.agents import SoccerPolicy
from marl_grpo.agents.checkpoint import load_policy
from marl_grpo.cli import main
from marl_grpo.envs import SoccerConfig
from marl_grpo.play import EvalConfig, run_eval
from marl_grpo.rl import PRESETS, TrainConfig, play_matches, preset
from marl_grpo.run.config import resume_config
from marl_grpo.run.presets import parse_config, parse_with_preset

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


def test_train_eval_watch_resume(tmp_path, device):
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
    # the logged evaluation is what `play_matches` gives for the saved policy (same seeds, same figures)
    policy, _ = load_policy(ckpt, device=device)
    again = play_matches(policy, preset("tiny").soccer_kwargs() | {"max_cycles": 16}, "team", 1.0, 4)
    assert scalars["eval/win_rate"][-1].value == pytest.approx(again["eval/win_rate"])
    assert scalars["eval/goal_diff"][-1].value == pytest.approx(again["eval/goal_diff"])

    # eval and watch --record read the checkpoint: eval's figures are play_matches' for the same seeds
    eval_args = [str(ckpt), "--matches", "4", "--opponent", "random", "--device", device]
    main(["eval", *eval_args])
    figures = run_eval(parse_config(EvalConfig, eval_args, "marl-grpo eval"))
    result = play_matches(policy, preset("tiny").soccer_kwargs() | {"max_cycles": 16}, "random", 1.0, 4)
    assert figures == pytest.approx(result)
    assert abs(figures["eval/win_rate"] + figures["eval/draw_rate"] + figures["eval/loss_rate"] - 1) < 1e-6
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


# --------------------------------------------------------------------------- settings that do nothing
UNUSED = [  # options given on the command line, then what the error names as unused and why
    (["--algo", "ppo", "--group-mode", "episode"], "--group-mode episode", "--algo ppo"),
    (["--algo", "ppo", "--supervision", "outcome"], "--supervision outcome", "--algo ppo"),
    (["--critic", "decentralized"], "--critic decentralized", "--algo grpo"),
    (["--no-norm-value"], "--no-norm-value", "--algo grpo"),
    (["--league-size", "4"], "--league-size 4", "--opponent team"),
    (["--opponent", "self", "--opponent-strength", "0.5"], "--opponent-strength 0.5", "--opponent self"),
    (["--group-mode", "team", "--group-size", "4"], "--group-size 4", "--group-mode team"),
    (["--group-mode", "episode", "--branch-horizon", "4"], "--branch-horizon 4", "--group-mode episode"),
    (["--supervision", "outcome", "--gamma", "0.9"], "--gamma 0.9", "--supervision outcome"),
    (["--ref-refresh", "5"], "--ref-refresh 5", "--kl-coef 0.0"),
    (["--sapo-temperature-pos", "2"], "--sapo-temperature-pos 2.0", "--loss-type grpo"),
]


@pytest.mark.parametrize("argv, option, setting", UNUSED)
def test_a_setting_the_run_does_not_read_is_refused(tmp_path, argv, option, setting):
    with pytest.raises(SystemExit) as refused:
        main(["train", "--preset", "tiny", "--log-dir", str(tmp_path), *argv])
    message = str(refused.value)
    assert re.fullmatch(rf"marl-grpo train: {re.escape(option)} has no effect with {re.escape(setting)} "
                        r"\([^()\n]+\); remove it", message), message
    assert not any(tmp_path.iterdir())  # refused before anything ran


def test_the_refusal_names_every_unused_setting_at_once():
    with pytest.raises(ValueError) as refused:
        TrainConfig(algo="ppo", group_size=4, supervision="outcome")
    assert str(refused.value).count("has no effect with --algo ppo") == 2
    assert str(refused.value).endswith("; remove them")


def test_presets_may_set_what_the_run_does_not_read():
    # tiny sets group_size 4: with --algo ppo that is the preset's, not the user's
    cfg = parse_with_preset(["--preset", "tiny", "--algo", "ppo"], PRESETS, "2v2", "marl-grpo train", "")
    assert (cfg.algo, cfg.group_size, cfg.given, cfg.preset) == ("ppo", 4, frozenset({"algo"}), "tiny")
    # in Python: a field counts as given where it differs from the preset's (or the class default)
    assert dataclasses.replace(preset("tiny"), algo="ppo").user_fields() == {"algo"}
    with pytest.raises(ValueError, match=r"^--group-size 2 has no effect with --algo ppo"):
        dataclasses.replace(preset("tiny"), algo="ppo", group_size=2)
    with pytest.raises(ValueError, match=r"^--league-window 5 has no effect with --opponent team"):
        TrainConfig(league_window=5)


def test_given_survives_replace_and_resume_checks_the_runs_own_settings():
    cfg = parse_with_preset(["--preset", "tiny", "--resume", "--critic", "decentralized"], PRESETS, "2v2",
                            "marl-grpo train", "")  # --critic with the preset's grpo: the saved run decides
    assert dataclasses.replace(cfg, seed=3).given == cfg.given == {"resume", "critic"}
    assert "given" not in cfg.to_dict() and cfg.to_dict()["preset"] == "tiny"
    ppo_run = dataclasses.replace(preset("tiny"), algo="ppo", critic="decentralized").to_dict()
    resumed = resume_config(cfg, ppo_run, cfg.given)
    assert (resumed.algo, resumed.critic, resumed.given) == ("ppo", "decentralized", cfg.given)
    grpo_run = {**preset("tiny").to_dict(), "critic": "decentralized"}  # a GRPO run that a preset gave a critic
    with pytest.raises(ValueError, match=r"^--critic decentralized has no effect with --algo grpo"):
        resume_config(cfg, grpo_run, cfg.given)
