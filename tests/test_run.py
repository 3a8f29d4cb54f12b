"""The shared run engine: one loop and one update for soccer and LLM runs, exact resume, learning,
config validation and the module of shared constants."""

import dataclasses
import re
import types

import pytest
import torch
from safetensors.torch import load_file

import marl_grpo.run.loop
import marl_grpo.run.update
from marl_grpo.agents import SoccerPolicy
from marl_grpo.agents.checkpoint import POLICY_FILE, load_policy
from marl_grpo.cli import main
from marl_grpo.envs import SoccerConfig
from marl_grpo.rl import GROUP_MODES, Groups, TrainConfig, play_matches, preset
from marl_grpo.run.checkpoint import load_trainer_state
from marl_grpo.run.config import RunConfig
from marl_grpo.run.files import CHECKPOINT_DIR

TINY = ["--preset", "tiny", "--max-cycles", "16"]


@pytest.fixture
def counted(monkeypatch):
    """Counts the calls of the one update step and of the loss core, each through the real code."""
    calls = {"update": 0, "policy_loss": 0}
    update, loss = marl_grpo.run.update.policy_update, marl_grpo.run.update.policy_loss

    def counting_update(*args, **kwargs):
        calls["update"] += 1
        return update(*args, **kwargs)

    def counting_loss(*args, **kwargs):
        calls["policy_loss"] += 1
        return loss(*args, **kwargs)

    monkeypatch.setattr(marl_grpo.run.loop, "policy_update", counting_update)
    monkeypatch.setattr(marl_grpo.run.update, "policy_loss", counting_loss)
    return calls


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_soccer_runs_go_through_the_shared_loop_and_update(tmp_path, counted, algo):
    main(["train", *TINY, "--algo", algo, "--log-dir", str(tmp_path), "--update-epochs", "2",
          "--num-minibatches", "2"])
    assert counted == {"update": 3, "policy_loss": 3 * 2 * 2}  # iterations; x epochs x minibatches


def test_llm_runs_go_through_the_shared_loop_and_update(tmp_path, counted):
    pytest.importorskip("transformers")
    main(["llm", "--preset", "test", "--log-dir", str(tmp_path), "--total-iterations", "3", "--update-epochs", "2",
          "--num-minibatches", "2"])
    assert counted == {"update": 3, "policy_loss": 3 * 2 * 2}


@pytest.mark.parametrize("algo, extra", [
    ("grpo", []), ("ppo", ["--opponent", "random"]), ("grpo", ["--group-mode", "episode+team"]),
    ("grpo", ["--opponent", "random"]), ("grpo", ["--opponent-strength", "0.5"]),
    ("grpo", ["--opponent", "self", "--kl-coef", "0.1", "--ref-refresh", "1"])])
def test_resume_is_exact(tmp_path, algo, extra):
    """4 iterations in one go, or 2 then 2 more with --resume: bit-identical weights and optimiser.
    (A constant learning rate: an annealed one follows the budget, which the two runs change.)"""
    groups = ["--group-size", "4"] if algo == "grpo" else []  # PPO has no groups: the option is refused
    args = ["train", *TINY, "--algo", algo, *extra, "--num-envs", "8", *groups, "--no-anneal-lr"]
    budget = 8 * (16 if "episode+team" in extra else 8)  # env steps per iteration
    main(args + ["--log-dir", str(tmp_path / "straight"), "--total-env-steps", str(4 * budget)])
    main(args + ["--log-dir", str(tmp_path / "halves"), "--total-env-steps", str(2 * budget)])
    main(args + ["--log-dir", str(tmp_path / "halves"), "--total-env-steps", str(4 * budget), "--resume"])
    straight, halves = (tmp_path / run / "tiny" / CHECKPOINT_DIR for run in ("straight", "halves"))
    weights = load_file(str(straight / POLICY_FILE))
    resumed = load_file(str(halves / POLICY_FILE))
    assert all(torch.equal(weights[k], resumed[k]) for k in weights)
    states = [load_trainer_state(path) for path in (straight, halves)]
    assert states[0]["iteration"] == states[1]["iteration"] == 4
    moments = [s["trainer"]["learner"]["optimizer"]["state"][0]["exp_avg"] for s in states]
    assert torch.equal(*moments)
    # and the run did move: the weights are not those of the initialisation
    torch.manual_seed(1)
    fresh = SoccerPolicy(SoccerConfig(team_size=2), hidden=32, device="cpu").state_dict()
    assert not all(torch.equal(fresh[k], weights[k]) for k in fresh)


def test_resume_is_exact_for_the_llm(tmp_path):
    pytest.importorskip("transformers")
    args = ["llm", "--preset", "test", "--max-new-tokens", "1", "--update-epochs", "2", "--kl-coef", "0.1"]
    main(args + ["--log-dir", str(tmp_path / "straight"), "--total-iterations", "4"])
    main(args + ["--log-dir", str(tmp_path / "halves"), "--total-iterations", "2"])
    main(args + ["--log-dir", str(tmp_path / "halves"), "--total-iterations", "4", "--resume"])
    weights = [load_file(str(tmp_path / run / "llm-test" / CHECKPOINT_DIR / "model.safetensors"))
               for run in ("straight", "halves")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_short_run_learns_to_beat_the_random_bot(tmp_path):
    """1v1 against the random bot, about 100k env steps: the trained policy scores and wins far
    more often than its own initialisation over the same 64 seeded matches."""
    main(["train", "--preset", "tiny", "--log-dir", str(tmp_path), "--team-size", "1", "--opponent", "random",
          "--num-envs", "64", "--group-size", "8", "--branch-horizon", "16", "--max-cycles", "100",
          "--total-env-steps", "100000", "--hidden", "64", "--num-minibatches", "4", "--learning-rate", "3e-3",
          "--no-anneal-lr", "--eval-every", "0", "--save-every", "0"])
    trained, meta = load_policy(tmp_path / "tiny" / CHECKPOINT_DIR, device="cpu")
    env_kwargs = {"team_size": 1, "max_cycles": 100}
    torch.manual_seed(1)
    fresh = SoccerPolicy(SoccerConfig(**env_kwargs), hidden=64, device="cpu")
    after = play_matches(trained, env_kwargs, "random", 1.0, 64)
    before = play_matches(fresh, env_kwargs, "random", 1.0, 64)
    assert after["eval/win_rate"] > before["eval/win_rate"] + 0.15, (before, after)
    assert after["eval/goal_diff"] > before["eval/goal_diff"] + 0.15, (before, after)


# --------------------------------------------------------------------------- configs


def test_config_validation_names_the_value():
    with pytest.raises(ValueError, match=r"max_grad_norm=-1.0 is invalid: expected a finite number > 0"):
        TrainConfig(max_grad_norm=-1.0)
    with pytest.raises(ValueError, match=r"ent_coef=nan is invalid"):
        TrainConfig(ent_coef=float("nan"))
    with pytest.raises(ValueError, match=r"reward_dist_to_ball=inf is invalid"):
        TrainConfig(reward_dist_to_ball=float("inf"))
    with pytest.raises(ValueError, match=r"threads=0 is invalid: expected an int >= 1"):
        RunConfig(threads=0)
    with pytest.raises(ValueError, match=r"loss_type='ppo' is invalid"):
        dataclasses.replace(preset("tiny"), loss_type="ppo")
    with pytest.raises(SystemExit, match=r"marl-grpo train: update_epochs=0 is invalid"):
        main(["train", *TINY, "--update-epochs", "0"])


def test_derived_values_are_typed_properties():
    cfg = preset("tiny")
    assert (cfg.segment_len, cfg.env_steps_per_iteration, cfg.iterations) == (8, 128, 3)
    episode = dataclasses.replace(cfg, group_mode="episode")
    assert (episode.segment_len, episode.iterations) == (40, 1)  # a whole match per segment
    with pytest.raises(ValueError, match=r"^--group-mode episode has no effect with --algo ppo \(GRPO's"):
        dataclasses.replace(episode, algo="ppo")  # a group mode that PPO would ignore
    ppo = dataclasses.replace(episode, algo="ppo", given=frozenset({"algo"}))  # the mode came from elsewhere
    assert ppo.segment_len == 8  # PPO forms no groups


def test_group_modes_are_registered_and_combine():
    assert set(GROUP_MODES) == {"team", "branch", "episode"}
    team = torch.tensor([0, 0, 1, 1])  # self-play: 2 blue, 2 red per match
    # 4 matches, G = 2: [match][slot] -> group
    assert Groups("team", 2).group_ids(4, team).view(4, 4).tolist() == [
        [0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5], [6, 6, 7, 7]]
    assert Groups("branch", 2).group_ids(4, team).view(4, 4).tolist() == [
        [0, 1, 2, 3], [0, 1, 2, 3], [4, 5, 6, 7], [4, 5, 6, 7]]
    assert Groups("episode+team", 2).group_ids(4, team).view(4, 4).tolist() == [
        [0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    for bad in ("branch+episode", "team+team", "swarm"):
        with pytest.raises(ValueError, match=re.escape(f"group_mode='{bad}' is invalid")):
            Groups(bad)


def test_bench_and_study_take_the_train_options_unprefixed():
    from marl_grpo.run.presets import parse_config
    from marl_grpo.tools.bench import TrainBenchConfig
    from marl_grpo.tools.study import GroupModeStudy

    bench = parse_config(TrainBenchConfig, ["--algo", "ppo", "--iterations", "2", "--num-envs", "64"], "bench")
    assert (bench.train.algo, bench.iterations, bench.train.num_envs, bench.train.update_epochs) == ("ppo", 2, 64, 1)
    study = parse_config(GroupModeStudy, ["--total-env-steps", "1000", "--modes", "team"], "study")
    assert (study.train.total_env_steps, study.modes) == (1000, ("team",))
    with pytest.raises(SystemExit, match=r"study: group_mode='swarm' is invalid"):
        parse_config(GroupModeStudy, ["--modes", "swarm"], "study")


def test_resuming_a_checkpoint_of_the_old_layout_is_refused_clearly(tmp_path):
    main(["train", *TINY, "--log-dir", str(tmp_path), "--total-env-steps", "128"])
    state_file = tmp_path / "tiny" / CHECKPOINT_DIR / "trainer_state.pt"
    state = torch.load(state_file, weights_only=False)
    old = {k: state[k] for k in ("iteration", "global_step", "elapsed", "wall_time")}
    torch.save({**old, "torch_rng": torch.get_rng_state(), "learner": state["trainer"]["learner"],
                "env": state["ranks"][0]["trainer"]["rollout"]["env"]}, state_file)  # 0.1's flat layout
    with pytest.raises(SystemExit, match="written by marl-grpo 0.1 before the shared run engine"):
        main(["train", *TINY, "--log-dir", str(tmp_path), "--resume", "--total-env-steps", "256"])
    main(["eval", str(tmp_path / "tiny" / CHECKPOINT_DIR), "--matches", "2"])  # its policy still plays


def test_soak_samples_memory_and_flags_growth(tmp_path, monkeypatch):
    import marl_grpo.tools.soak as soak

    ticks = iter(range(10**9))  # one fake clock for the run and the sampler: 0.1 s per reading
    fake_time = types.SimpleNamespace(perf_counter=lambda: next(ticks) / 10)
    monkeypatch.setattr(marl_grpo.run.loop, "time", fake_time)
    monkeypatch.setattr(soak, "time", fake_time)
    train = dataclasses.replace(preset("tiny"), log_dir=str(tmp_path), total_env_steps=10**9, eval_every=0,
                                save_every=0)
    result = soak.run_soak(soak.SoakConfig(minutes=0.2, interval=1e-3, tolerance_mb=64, train=train))
    assert result["samples"] >= 8 and abs(result["rss_growth_mb"]) < 64
    leak = iter(range(0, 10**6, 10))  # 10 MB more at every sample
    monkeypatch.setattr(soak, "rss_mb", lambda: float(next(leak)))
    with pytest.raises(SystemExit, match="memory grew beyond 64"):
        soak.run_soak(soak.SoakConfig(minutes=0.2, interval=1e-3, tolerance_mb=64,
                                      train=dataclasses.replace(train, name="leaky")))


def test_a_time_bound_run_anneals_its_learning_rate_over_its_minutes(tmp_path, monkeypatch):
    """With `max_minutes` the ramp follows the time budget when it is further spent than the step
    budget: a run of a few seconds out of a step budget of millions still ends near zero. The loop's
    clock is a fake one that advances 0.4 s per update, so that a slow or busy machine changes nothing."""
    lrs = []
    update = marl_grpo.run.update.policy_update
    clock = [0.0]

    def recording_update(batch, optimizer, *args, **kwargs):
        lrs.append(optimizer.param_groups[0]["lr"])
        clock[0] += 0.4
        return update(batch, optimizer, *args, **kwargs)

    monkeypatch.setattr(marl_grpo.run.loop, "policy_update", recording_update)
    monkeypatch.setattr(marl_grpo.run.loop, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    main(["train", *TINY, "--log-dir", str(tmp_path), "--total-env-steps", "100000000", "--max-minutes", "0.05",
          "--eval-every", "0", "--save-every", "0", "--learning-rate", "0.001"])
    assert len(lrs) == 8 and lrs[0] > 0.9e-3  # 3 s at 0.4 s per update; by steps alone every lr would be ~1e-3
    assert all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 0.5e-3
