"""A frozen soccer checkpoint as the training opponent (`--opponent PATH`): GRPO and PPO against it,
red's actions are the checkpoint's on red's own observations, exact resume, and bad input."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from marl_grpo.agents import SoccerPolicy, sample_actions
from marl_grpo.agents.checkpoint import POLICY_FILE, read_config, write_policy
from marl_grpo.cli import main
from marl_grpo.envs import SoccerConfig
from marl_grpo.rl import TrainConfig, preset
from marl_grpo.rl.opponent import OPPONENT_SEED_OFFSET, PolicyOpponent, load_opponent
from marl_grpo.rl.train import SoccerTrainer
from marl_grpo.run.checkpoint import load_trainer_state
from marl_grpo.run.files import CHECKPOINT_DIR, LLM_CONFIG_FILE

TINY = ["train", "--preset", "tiny", "--max-cycles", "16", "--num-envs", "8"]  # G = 4, 2v2
ITERATION = 8 * 8  # env steps of one iteration of TINY (branch horizon 8)
KICK = 7
"""the action the fixed target always plays"""


def _fixed_target(folder: Path, action: int = KICK, team_size: int = 2) -> Path:
    """A checkpoint whose policy plays `action` whatever it sees: zero weights, a large bias on that
    action's logit, written by the project's writer."""
    config = SoccerConfig(team_size=team_size)
    policy = SoccerPolicy(config, hidden=32, device="cpu")
    with torch.no_grad():
        for p in policy.parameters():
            p.zero_()
        policy.head.bias[action] = 50.0
    folder.mkdir(parents=True)
    write_policy(folder, policy, config, {"name": "fixed"})
    return folder


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Path:
    """A tiny target trained for three iterations against the team bot."""
    runs = tmp_path_factory.mktemp("target")
    main([*TINY, "--log-dir", str(runs), "--total-env-steps", str(3 * ITERATION), "--seed", "5"])
    return runs / "tiny" / CHECKPOINT_DIR


@pytest.mark.parametrize("algo, mode", [("grpo", "branch+team"), ("grpo", "episode"), ("ppo", None)])
def test_grpo_and_ppo_train_against_a_frozen_checkpoint(tmp_path, target, algo, mode):
    before = load_file(str(target / POLICY_FILE))
    args = [*TINY, "--log-dir", str(tmp_path), "--opponent", str(target), "--algo", algo,
            "--total-env-steps", str(2 * (16 if mode == "episode" else 8) * 8)]
    main(args + (["--group-mode", mode] if mode else []))
    run = tmp_path / "tiny" / CHECKPOINT_DIR
    assert read_config(run)["train"]["opponent"] == str(target)
    state = load_trainer_state(run)
    assert state["global_step"] == int(args[-1])
    learned = load_file(str(run / POLICY_FILE))
    assert any(not torch.equal(learned[k], before[k]) for k in before)  # the learner moved off its start...
    after = load_file(str(target / POLICY_FILE))
    assert all(torch.equal(after[k], before[k]) for k in before)  # ...and the frozen target did not
    acc = EventAccumulator(str(tmp_path / "tiny"))
    acc.Reload()
    scores = [e.value for e in acc.Scalars("charts/score_train")]  # win + draw / 2 against the target
    assert scores and all(0.0 <= s <= 1.0 for s in scores)


def _play_one_segment(tmp_path: Path, opponent: Path, **changes) -> tuple[SoccerTrainer, list, list, list]:
    """A trainer against `opponent`, one collected segment, and what red saw and did at each step:
    (trainer, obs before each step [B, N, D], the opponent's input [B, R, D], the actions [B, N])."""
    cfg = dataclasses.replace(preset("tiny"), log_dir=str(tmp_path), max_cycles=16, num_envs=8,
                              opponent=str(opponent), **changes)
    trainer = SoccerTrainer(cfg, torch.device("cpu"), None)
    seen, given, played = [], [], []
    step, act = trainer.env.step, trainer.opponent.act

    def record_step(actions):
        played.append(actions.clone())
        obs, *rest = step(actions)
        seen.append(obs.clone())
        return (obs, *rest)

    def record_act(obs):
        given.append(obs.clone())
        return act(obs)

    groups = trainer.collector.groups
    if groups is None:
        seen.append(trainer.collector.obs.clone())
    else:
        start = groups.start_segment

        def record_start(env):
            started = start(env)  # branch mode copies matches before the segment: the first observation changes
            seen.append((trainer.collector.obs if started is None else started).clone())
            return started

        groups.start_segment = record_start
    trainer.env.step, trainer.opponent.act = record_step, record_act
    segment = trainer.collect()
    assert segment.actions.shape == (8, 8, 2)  # the learner controls blue only
    return trainer, seen[:-1], given, played


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_red_plays_the_checkpoints_action(tmp_path, algo):
    trainer, _, _, played = _play_one_segment(tmp_path, _fixed_target(tmp_path / "fixed"), algo=algo)
    actions = torch.stack(played)  # [T, B, N]
    assert bool((actions[..., 2:] == KICK).all())
    assert not bool((actions[..., :2] == KICK).all())  # blue is the learner's own sampling


def test_red_sees_its_own_mirrored_observations_and_samples_the_checkpoints_policy(tmp_path, target):
    trainer, seen, given, played = _play_one_segment(tmp_path, target)
    n_blue = trainer.env.config.n_blue
    assert len(given) == len(seen) == 8
    policy = trainer.opponent.policy
    generator = torch.Generator().manual_seed(preset("tiny").seed + OPPONENT_SEED_OFFSET)
    for obs, red_obs, actions in zip(seen, given, played):
        # the rows a self-play or league red acts on: the env's observation of each red player
        assert torch.equal(red_obs, obs[:, n_blue:])
        expected, _ = sample_actions(policy(red_obs), generator=generator)
        assert torch.equal(actions[:, n_blue:], expected)


def test_load_opponent_is_the_public_api(tmp_path):
    config = SoccerConfig(team_size=2)
    opponent = load_opponent(_fixed_target(tmp_path / "fixed"), config, seed=3, device="cpu")
    assert isinstance(opponent, PolicyOpponent)
    obs = torch.randn(5, 2, config.obs_dim)
    assert torch.equal(opponent.act(obs), torch.full((5, 2), KICK))
    assert not any(p.requires_grad for p in opponent.policy.parameters())
    assert TrainConfig(opponent=str(tmp_path / "fixed")).opponent == str(tmp_path / "fixed")


def test_resume_against_a_checkpoint_is_exact(tmp_path, target):
    args = [*TINY, "--opponent", str(target), "--no-anneal-lr"]
    main(args + ["--log-dir", str(tmp_path / "straight"), "--total-env-steps", str(4 * ITERATION)])
    main(args + ["--log-dir", str(tmp_path / "halves"), "--total-env-steps", str(2 * ITERATION)])
    # the opponent comes back from the run's config.json: resume does not name it again
    main([*TINY, "--no-anneal-lr", "--log-dir", str(tmp_path / "halves"), "--total-env-steps", str(4 * ITERATION),
          "--resume"])
    straight, halves = (tmp_path / run / "tiny" / CHECKPOINT_DIR for run in ("straight", "halves"))
    assert read_config(halves)["train"]["opponent"] == str(target)
    weights, resumed = load_file(str(straight / POLICY_FILE)), load_file(str(halves / POLICY_FILE))
    assert all(torch.equal(weights[k], resumed[k]) for k in weights)


def test_a_checkpoint_the_run_cannot_play_is_refused_in_one_line(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(SystemExit, match=rf"^marl-grpo train: opponent='{missing}' is invalid: expected one of .* or a "
                                         r"checkpoint folder of marl-grpo train .* \(no folder at that path\)$"):
        main([*TINY, "--log-dir", str(tmp_path), "--opponent", str(missing)])
    with pytest.raises(SystemExit, match=r"opponent='tem' is invalid: expected one of \('random', 'chaser', 'team'"):
        main([*TINY, "--log-dir", str(tmp_path), "--opponent", "tem"])  # a misspelt bot name
    llm = tmp_path / "llm"
    llm.mkdir()
    (llm / LLM_CONFIG_FILE).write_text(json.dumps({"train": {"task": "soccer"}}))
    (llm / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(SystemExit, match=rf"^marl-grpo train: opponent='{llm}' is an LLM checkpoint"):
        main([*TINY, "--log-dir", str(tmp_path), "--opponent", str(llm)])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match=rf"^marl-grpo train: opponent='{empty}' is not a usable soccer checkpoint: no checkpoint at"):
        main([*TINY, "--log-dir", str(tmp_path), "--opponent", str(empty)])
    one_v_one = _fixed_target(tmp_path / "1v1", team_size=1)
    with pytest.raises(SystemExit, match=rf"^marl-grpo train: opponent='{one_v_one}': the checkpoint was trained on "
                                         r"observations of width \d+ \(team sizes 1v1\), but this env gives width "
                                         r"\d+ \(2v2\)"):
        main([*TINY, "--log-dir", str(tmp_path), "--opponent", str(one_v_one)])
    # in Python too, before any env is built
    with pytest.raises(ValueError, match="team sizes 1v1"):
        dataclasses.replace(preset("tiny"), opponent=str(one_v_one))
    # the scripted opponent's strength means nothing to a checkpoint
    fixed = _fixed_target(tmp_path / "fixed")
    with pytest.raises(SystemExit, match=rf"^marl-grpo train: --opponent-strength 0.5 has no effect with --opponent "
                                         rf"{fixed} \(a scripted opponent"):
        main([*TINY, "--log-dir", str(tmp_path), "--opponent", str(fixed), "--opponent-strength", "0.5"])
    assert not (tmp_path / "tiny").exists()  # nothing was trained
