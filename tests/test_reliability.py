"""Reliability: crash-safe checkpoints, clear errors for bad or damaged input, no non-finite weights
in a checkpoint, resume that keeps the run's settings, and no duplicate TensorBoard points."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import marl_grpo.run.checkpoint
import marl_grpo.run.loop
import marl_grpo.run.update
from marl_grpo.advantages import episode_returns
from marl_grpo.agents import SoccerPolicy
from marl_grpo.agents.checkpoint import POLICY_CONFIG_FILE, POLICY_FILE, load_policy
from marl_grpo.cli import main
from marl_grpo.envs import SoccerVecEnv, soccer_v0
from marl_grpo.losses import policy_loss
from marl_grpo.rl import TrainConfig
from marl_grpo.run.checkpoint import atomic_directory, load_trainer_state, recover
from marl_grpo.run.files import CHECKPOINT_DIR, STATE_FILE

TINY = ["--preset", "tiny", "--max-cycles", "16"]


def _train(tmp_path, *extra: str) -> None:
    main(["train", *TINY, "--log-dir", str(tmp_path), *extra])


# --------------------------------------------------------------------------- crash-safe checkpoints

class PowerCut(BaseException):
    """Stops the process where it is, as kill -9 would: nothing catches it, and the file system is
    left exactly as it was at that call (every file-system call here is synchronous)."""


def _cut_at(monkeypatch, crash_at: int) -> dict[str, int]:
    """Make the `crash_at`-th file-system call on a checkpoint path (rename, replace, rmtree, fsync) cut the power."""
    calls = {"n": 0}

    def cutting(fn):
        def wrapped(*args, **kwargs):
            if "checkpoint" in str(args[0]):
                calls["n"] += 1
                if calls["n"] == crash_at:
                    raise PowerCut
            return fn(*args, **kwargs)
        return wrapped

    for module, name in ((os, "replace"), (os, "rename"), (shutil, "rmtree"), (marl_grpo.run.checkpoint, "_fsync")):
        monkeypatch.setattr(module, name, cutting(getattr(module, name)))
    return calls


def test_a_crash_at_any_step_of_a_save_leaves_a_resumable_checkpoint(tmp_path, monkeypatch):
    """Cut the power at the k-th file-system call of a resumed run's save, for every k until a run
    gets through: the run always resumes, from the old or the new checkpoint, and ends whole."""
    base = tmp_path / "base"
    _train(base, "--total-env-steps", "128")
    for crash_at in range(1, 30):
        run = tmp_path / f"crash{crash_at}"
        shutil.copytree(base, run)
        with monkeypatch.context() as patch:
            calls = _cut_at(patch, crash_at)
            try:
                _train(run, "--resume", "--total-env-steps", "256")
            except PowerCut:
                pass
        if calls["n"] < crash_at:
            break  # every file-system step of the save has been cut once
        assert load_trainer_state(run / "tiny" / CHECKPOINT_DIR)["iteration"] in (1, 2)
        _train(run, "--resume", "--total-env-steps", "256")
        assert load_trainer_state(run / "tiny" / CHECKPOINT_DIR)["iteration"] == 2
        load_policy(run / "tiny" / CHECKPOINT_DIR)
        assert sorted(p.name for p in (run / "tiny").iterdir() if p.name.startswith("checkpoint")) == ["checkpoint"]
    else:
        pytest.fail("the save kept crashing: more file-system calls than expected")
    assert crash_at > 8  # the save went through that many interrupted steps


KILLED_BETWEEN_RENAMES = textwrap.dedent("""
    import os, signal, sys
    from marl_grpo.cli import main
    replace = os.replace

    def kill_on_the_second(src, dst):  # the old checkpoint moved away, the new one not yet in place
        if str(src).endswith("checkpoint.tmp"):
            os.kill(os.getpid(), signal.SIGKILL)
        return replace(src, dst)

    os.replace = kill_on_the_second
    main(["train", "--preset", "tiny", "--max-cycles", "16", "--log-dir", sys.argv[1], "--resume",
          "--total-env-steps", "256"])
""")


def test_kill_9_between_the_renames_of_a_save(tmp_path):
    _train(tmp_path, "--total-env-steps", "128")
    done = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_RENAMES, str(tmp_path)], capture_output=True)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    assert not (tmp_path / "tiny" / CHECKPOINT_DIR).exists()  # the window the old protocol lost runs in
    _train(tmp_path, "--resume", "--total-env-steps", "256")
    assert load_trainer_state(tmp_path / "tiny" / CHECKPOINT_DIR)["iteration"] == 2


def test_recover_prefers_a_whole_new_checkpoint_and_keeps_the_old_one_otherwise(tmp_path):
    path = tmp_path / "checkpoint"
    with atomic_directory(path) as tmp:
        (tmp / "v").write_text("1")
    path.rename(tmp_path / "checkpoint.old")  # a crash between the two renames of the next save
    recover(path)
    assert (path / "v").read_text() == "1" and not (tmp_path / "checkpoint.old").exists()
    partial = tmp_path / "checkpoint.tmp"
    partial.mkdir()
    (partial / "v").write_text("2")  # a save cut off before it was whole: ignored and removed
    recover(path)
    assert (path / "v").read_text() == "1" and not partial.exists()


def test_a_fresh_run_does_not_overwrite_a_run_left_by_a_crash(tmp_path):
    _train(tmp_path, "--total-env-steps", "128")
    ckpt = tmp_path / "tiny" / CHECKPOINT_DIR
    ckpt.rename(ckpt.with_name("checkpoint.old"))
    with pytest.raises(SystemExit, match="already holds a run"):
        _train(tmp_path)
    assert load_trainer_state(ckpt)["iteration"] == 1


# --------------------------------------------------------------------------- non-finite values


def test_a_non_finite_update_stops_the_run_and_the_checkpoint_stays_finite(tmp_path, monkeypatch):
    _train(tmp_path, "--total-env-steps", "256")  # 2 iterations, a checkpoint each
    before = load_file(str(tmp_path / "tiny" / CHECKPOINT_DIR / POLICY_FILE))

    def poisoned(*args, **kwargs):
        loss, stats = policy_loss(*args, **kwargs)
        return loss * float("nan"), stats

    monkeypatch.setattr(marl_grpo.run.update, "policy_loss", poisoned)
    with pytest.raises(SystemExit, match=r"iteration 3: the update produced a non-finite loss or gradient"):
        _train(tmp_path, "--resume", "--total-env-steps", "512")
    after = load_file(str(tmp_path / "tiny" / CHECKPOINT_DIR / POLICY_FILE))
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert load_trainer_state(tmp_path / "tiny" / CHECKPOINT_DIR)["iteration"] == 2


# --------------------------------------------------------------------------- resume keeps the run's settings


def test_resume_reads_the_runs_own_settings(tmp_path):
    _train(tmp_path, "--hidden", "16", "--arch", "entity", "--total-env-steps", "128")
    _train(tmp_path, "--resume", "--total-env-steps", "256", "--eval-matches", "2")  # no --hidden / --arch
    policy, meta = load_policy(tmp_path / "tiny" / CHECKPOINT_DIR)
    assert (meta["policy"]["arch"], meta["policy"]["hidden"], meta["train"]["total_env_steps"]) == ("entity", 16, 256)
    with pytest.raises(SystemExit, match=r"algo='ppo' \(the run has 'grpo'\)"):
        _train(tmp_path, "--resume", "--algo", "ppo")
    with pytest.raises(SystemExit, match=r"hidden=32 \(the run has 16\).*may change only .*total_env_steps"):
        _train(tmp_path, "--resume", "--hidden", "32")


def test_a_resumed_run_logs_each_step_once(tmp_path, monkeypatch):
    """A run that crashed after logging past its last checkpoint: the resumed run drops those points."""
    update = marl_grpo.run.loop.policy_update
    calls = {"n": 0}

    def crash_on_the_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return update(*args, **kwargs)

    monkeypatch.setattr(marl_grpo.run.loop, "policy_update", crash_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, "--total-env-steps", "640", "--save-every", "2")  # logged 1-3, saved at 2
    monkeypatch.setattr(marl_grpo.run.loop, "policy_update", update)
    _train(tmp_path, "--total-env-steps", "640", "--save-every", "2", "--resume")
    acc = EventAccumulator(str(tmp_path / "tiny"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("losses/policy_loss")] == [128, 256, 384, 512, 640]


# --------------------------------------------------------------------------- damaged checkpoints


def _damage(tmp_path, name, how):
    _train(tmp_path, "--total-env-steps", "128")
    file = tmp_path / "tiny" / CHECKPOINT_DIR / name
    data = file.read_bytes()
    file.write_bytes(how(data))
    return tmp_path / "tiny" / CHECKPOINT_DIR


@pytest.mark.parametrize("name, how, message", [
    (POLICY_FILE, lambda d: d[: len(d) // 2], "does not match the checksum"),
    (POLICY_FILE, lambda d: d[:-9] + bytes([d[-9] ^ 0xFF]) + d[-8:], "does not match the checksum"),
    (POLICY_FILE, lambda d: b"", "does not match the checksum"),
    (POLICY_CONFIG_FILE, lambda d: b"{not json", "is not valid JSON"),
    (POLICY_CONFIG_FILE, lambda d: b'{"policy": 3}', "is not a marl-grpo checkpoint config"),
    (POLICY_CONFIG_FILE, lambda d: json.dumps({**json.loads(d), "policy_sha256": None, "policy": {
        **json.loads(d)["policy"], "hidden": 64}}).encode(), "do not fit the architecture"),
])
def test_eval_on_a_damaged_checkpoint_names_the_file(tmp_path, name, how, message):
    ckpt = _damage(tmp_path, name, how)
    with pytest.raises(SystemExit, match=message):
        main(["eval", str(ckpt), "--matches", "2"])


def test_a_damaged_checkpoint_without_checksum_is_still_refused_clearly(tmp_path):
    ckpt = _damage(tmp_path, POLICY_FILE, lambda d: d[:100])
    meta = json.loads((ckpt / POLICY_CONFIG_FILE).read_text())
    del meta["policy_sha256"]  # as written by marl-grpo 0.1
    (ckpt / POLICY_CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="is not a readable safetensors file"):
        main(["eval", str(ckpt), "--matches", "2"])


def test_resume_on_a_truncated_trainer_state_names_the_file(tmp_path):
    _damage(tmp_path, STATE_FILE, lambda d: d[: len(d) // 3])
    with pytest.raises(SystemExit, match=r"trainer_state.pt' cannot be read .*the checkpoint is damaged"):
        _train(tmp_path, "--resume", "--total-env-steps", "256")


# --------------------------------------------------------------------------- bad input, one table

BAD_CLI = [
    (["--ent-coef", "nan"], "ent_coef=nan is invalid: expected a finite number"),
    (["--reward-dist-to-ball", "nan"], "reward_dist_to_ball=nan is invalid"),
    (["--max-grad-norm", "-1"], "max_grad_norm=-1.0 is invalid: expected a finite number > 0"),
    (["--threads", "0"], "threads=0 is invalid: expected an int >= 1"),
    (["--eval-matches", "0"], "eval_matches=0 is invalid"),
    (["--save-every", "-1"], "save_every=-1 is invalid: expected an int >= 0"),
    (["--eval-every", "-1"], "eval_every=-1 is invalid"),
    (["--max-minutes", "-1"], "max_minutes=-1.0 is invalid"),
    (["--clip-eps", "5"], "clip_eps=5.0 is invalid: expected a number > 0 and < 1"),
    (["--num-minibatches", "10000"], "num_minibatches=10000 is more than the 32 sequences"),
    (["--team-size", "1", "--group-mode", "team"], "gives one-member groups"),
    (["--loss-type", "vespo", "--ratio-level", "sequence"], "loss_type='vespo'"),
    (["--opponent", "league", "--league-anchors", "goalie"], "unknown bot 'goalie'"),
    (["--num-envs", "10"], "multiple of group_size"),
    (["--opponent", "keeper"], "opponent='keeper' is invalid"),
    (["--kl-coef", "0.1", "--ref-refresh", "-1"], "ref_refresh=-1 is invalid"),
]


@pytest.mark.parametrize("args, message", BAD_CLI)
def test_bad_train_options_fail_fast_with_one_line(tmp_path, args, message):
    with pytest.raises(SystemExit, match=message.replace("(", r"\(").replace(")", r"\)")):
        _train(tmp_path, *args)
    assert not (tmp_path / "tiny").exists()  # nothing started


def test_kl_with_a_reference_that_never_refreshes_runs(tmp_path):
    _train(tmp_path, "--kl-coef", "0.1", "--ref-refresh", "0", "--total-env-steps", "256")
    state = load_trainer_state(tmp_path / "tiny" / CHECKPOINT_DIR)["trainer"]["learner"]["ref_policy"]
    torch.manual_seed(1)
    initial = SoccerPolicy(35, hidden=32, device="cpu").state_dict()
    assert all(torch.equal(state[k], initial[k]) for k in initial)  # still the initial policy


BAD_API = [
    (lambda: soccer_v0.parallel_env(reward_goal=float("nan")), ValueError, "reward_goal=nan is invalid"),
    (lambda: _pz_step({"blue_0": True, "red_0": 0}), TypeError, "must be an int"),
    (lambda: _pz_step({"blue_0": 0, "red_0": 0, "red_7": 1}), KeyError, "not in the match"),
    (lambda: policy_loss(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0)), ValueError,
     "at least one sequence"),
    (lambda: SoccerPolicy(35, hidden=8, device="cpu").logp_and_entropy(torch.zeros(2, 35), torch.tensor([0, 12])),
     RuntimeError, r"actions must lie in \[0, 9\]"),
    (lambda: TrainConfig(clip_eps=1.5), ValueError, "clip_eps=1.5 is invalid"),
]


def _pz_step(actions):
    env = soccer_v0.parallel_env(team_size=1)
    env.reset(seed=0)
    env.step(actions)


@pytest.mark.parametrize("call, error, message", BAD_API)
def test_bad_api_input_gets_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_branch_takes_numpy_integers():
    env = SoccerVecEnv(num_envs=4, device="cpu")
    env.reset(seed=0)
    obs = env.branch(np.array([1, 3]), np.int64(2))
    assert torch.equal(obs[0], obs[1]) and torch.equal(obs[2], obs[3])


# --------------------------------------------------------------------------- outcome supervision


def test_episode_returns_split_at_match_ends():
    rewards = torch.tensor([[1.0, 2.0], [3.0, 0.0], [5.0, 1.0], [7.0, 4.0]])
    dones = torch.tensor([[False, False], [True, False], [False, True], [False, False]])
    # column 0: episodes {0, 1} and {2, 3}; column 1: {0, 1, 2} and {3}
    assert episode_returns(rewards, dones).tolist() == [[4.0, 3.0], [4.0, 3.0], [12.0, 3.0], [12.0, 4.0]]
    assert episode_returns(rewards).tolist() == [[16.0, 7.0]] * 4


def test_outcome_advantages_credit_each_step_with_its_own_match():
    """A match ends after step 1 of a 3-step segment: steps 0-1 are compared on the old match's
    return, step 2 on the new one's, across the group at each step."""
    from marl_grpo.envs import SoccerConfig
    from marl_grpo.rl.grpo import GRPOLearner
    from marl_grpo.rl.rollout import Segment

    cfg = TrainConfig(num_envs=4, group_size=2, group_mode="branch", supervision="outcome")
    learner = GRPOLearner(SoccerPolicy(35, hidden=8, device="cpu"), cfg, SoccerConfig(team_size=2))
    rewards = torch.tensor([[[1.0], [0.0], [2.0], [0.0]], [[1.0], [1.0], [0.0], [0.0]], [[0.0], [3.0], [1.0], [5.0]]])
    dones = torch.tensor([[False] * 4, [True, True, False, False], [False] * 4])  # matches 0, 1 end after step 1
    segment = Segment(obs=torch.zeros(3, 4, 1, 35), actions=torch.zeros(3, 4, 1, dtype=torch.long),
                      logp=torch.zeros(3, 4, 1), rewards=rewards, dones=dones, team=torch.zeros(1, dtype=torch.long),
                      episode_returns=[], episode_results=[], agents=torch.arange(1), next_obs=torch.zeros(4, 1, 35))
    adv = learner.advantages(segment)[0].advantages  # [S, T]
    h = 2 ** -0.5  # two members: (x - mean) / std = +-(1 / sqrt 2), whatever their gap
    # group {0, 1} (copies): returns 2 vs 1 over steps 0-1, then 0 vs 3 at step 2 (without the split:
    # 2 vs 4 at every step); group {2, 3}: 3 vs 5 throughout
    expected = torch.tensor([[h, h, -h], [-h, -h, h], [-h, -h, -h], [h, h, h]])
    torch.testing.assert_close(adv, expected, atol=1e-3, rtol=0)
