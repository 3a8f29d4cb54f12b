"""Bots as opponents inside the env (`opponent=`): only blue's players are agents, and blue's rows are
bit for bit those of the same match with red driven from outside by the same opponent, seeded the
same way; the PettingZoo API tests, the gymnasium view, a checkpoint opponent, and bad input."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium.wrappers.vector import RecordEpisodeStatistics
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test

import marl_grpo.agents
import marl_grpo.envs.bots
from marl_grpo.agents import SoccerPolicy, load_policy_opponent, make_bot, sample_actions
from marl_grpo.agents.checkpoint import load_policy, write_policy
from marl_grpo.envs import SoccerConfig, SoccerVecEnv, soccer_v0

NB = 2
"""blue's team size in these 2v2 matches"""


def blue_actions(generator: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randint(0, 10, shape, generator=generator)


def assert_same_step(inside: tuple, outside: tuple, blue: slice) -> None:
    """A step of the in-env match equals blue's part of the same step driven from outside."""
    obs_i, rew_i, term_i, trunc_i, info_i = inside
    obs_o, rew_o, term_o, trunc_o, info_o = outside
    assert torch.equal(obs_i, obs_o[:, blue])
    assert torch.equal(rew_i, rew_o[:, blue])
    assert torch.equal(term_i, term_o) and torch.equal(trunc_i, trunc_o)
    assert set(info_i) == set(info_o)
    for key, value in info_o.items():
        per_player = key.startswith("reward_") or key in ("final_obs", "episode_return")
        assert torch.equal(info_i[key], value[:, blue] if per_player else value), key


# ---------------------------------------------------------------------------------- PettingZoo API
@pytest.mark.parametrize("opponent", [None, "team"])
def test_pettingzoo_api_tests_pass_with_and_without_an_opponent(opponent):
    parallel_api_test(soccer_v0.parallel_env(max_cycles=40, opponent=opponent), num_cycles=60)
    api_test(soccer_v0.env(max_cycles=40, opponent=opponent), num_cycles=30)
    parallel_seed_test(lambda: soccer_v0.parallel_env(max_cycles=40, opponent=opponent, opponent_strength=0.5
                                                      if opponent else 1.0))
    env = soccer_v0.parallel_env(team_size=2, opponent=opponent)
    blue = ["blue_0", "blue_1"]
    assert env.possible_agents == (blue if opponent else [*blue, "red_0", "red_1"])
    obs, infos = env.reset(seed=0)
    assert list(obs) == list(infos) == env.agents == env.possible_agents
    with pytest.raises(KeyError, match="red_0") if opponent else nullcontext():
        env.observation_space("red_0")


# ---------------------------------------------------------------------------------- bit for bit
@pytest.mark.parametrize("name, strength", [("team", 1.0), ("team", 0.6), ("random", 0.5), ("chaser", 0.8)])
def test_vec_env_blue_is_bit_for_bit_the_match_with_red_driven_from_outside(name, strength):
    kwargs = dict(num_envs=5, team_size=2, max_cycles=24, device="cpu")
    inside = SoccerVecEnv(opponent=name, opponent_strength=strength, **kwargs)
    outside = SoccerVecEnv(**kwargs)
    assert inside.agents == ["blue_0", "blue_1"] and inside.num_agents == NB
    assert inside.observation_space.shape == (5, NB, outside.obs_dim) and inside.action_space.shape == (5, NB)
    for seed, steps in ((11, 55), (12, 10)):  # over two auto-resets, then a re-seeded reset
        bot = make_bot(name, outside.config, strength=strength, seed=seed)
        gen = torch.Generator().manual_seed(seed)
        obs_i, obs_o = inside.reset(seed=seed), outside.reset(seed=seed)
        assert torch.equal(obs_i, obs_o[:, :NB])
        ended = 0
        for _ in range(steps):
            blue = blue_actions(gen, (5, NB))
            step_o = outside.step(torch.cat([blue, bot.act(obs_o[:, NB:])], 1))
            step_i = inside.step(blue)
            assert_same_step(step_i, step_o, slice(0, NB))
            obs_o = step_o[0]
            ended += int((step_o[2] | step_o[3]).sum())
        assert ended == (10 if steps == 55 else 0)
    assert torch.equal(inside.state(), outside.state())  # the global state keeps every player


def test_the_opponents_seed_is_the_resets_seed():
    """The check above can fail: red seeded otherwise plays another match."""
    kwargs = dict(num_envs=4, team_size=2, max_cycles=30, device="cpu")
    inside = SoccerVecEnv(opponent="random", **kwargs)
    outside = SoccerVecEnv(**kwargs)
    bot = make_bot("random", outside.config, seed=4)  # not the reset's seed 3
    obs_i, obs_o = inside.reset(seed=3), outside.reset(seed=3)
    same = []
    for _ in range(10):
        blue = torch.zeros(4, NB, dtype=torch.long)
        obs_o = outside.step(torch.cat([blue, bot.act(obs_o[:, NB:])], 1))[0]
        obs_i = inside.step(blue)[0]
        same.append(torch.equal(obs_i, obs_o[:, :NB]))
    assert not all(same)


@pytest.mark.parametrize("name, strength", [("team", 1.0), ("random", 0.4), ("team", 0.5)])
def test_parallel_env_blue_is_bit_for_bit_the_match_with_red_driven_from_outside(name, strength):
    inside = soccer_v0.parallel_env(team_size=2, max_cycles=20, opponent=name, opponent_strength=strength)
    outside = soccer_v0.parallel_env(team_size=2, max_cycles=20)
    blue, red = outside.possible_agents[:NB], outside.possible_agents[NB:]
    assert inside.possible_agents == blue
    bot = make_bot(name, outside.config, strength=strength, seed=7)
    rng = np.random.default_rng(0)
    steps = 0
    for match in range(3):  # seeded, then two resets that continue the stream
        seed = 7 if match == 0 else None
        (obs_i, info_i), (obs_o, info_o) = inside.reset(seed=seed), outside.reset(seed=seed)
        bot.reset(seed=seed)
        while inside.agents:
            assert list(obs_i) == blue and info_i == {a: info_o[a] for a in blue}
            for a in blue:
                np.testing.assert_array_equal(obs_i[a], obs_o[a])
            red_obs = torch.as_tensor(np.stack([obs_o[a] for a in red]))[None]
            actions = {a: int(rng.integers(10)) for a in blue}
            outside_actions = {**actions, **dict(zip(red, bot.act(red_obs)[0].tolist()))}
            obs_i, rew_i, term_i, trunc_i, info_i = inside.step(actions)
            obs_o, rew_o, term_o, trunc_o, info_o = outside.step(outside_actions)
            assert rew_i == {a: rew_o[a] for a in blue}
            assert term_i == {a: term_o[a] for a in blue} and trunc_i == {a: trunc_o[a] for a in blue}
            steps += 1
        assert not outside.agents and trunc_o[blue[0]]
        assert info_i == {a: info_o[a] for a in blue}
    assert steps == 60


# ---------------------------------------------------------------------------------- gymnasium view
def test_the_gymnasium_view_has_only_blues_players():
    native = SoccerVecEnv(num_envs=3, team_size=2, max_cycles=12, device="cpu", opponent="team")
    twin = SoccerVecEnv(num_envs=3, team_size=2, max_cycles=12, device="cpu", opponent="team")
    env = RecordEpisodeStatistics(native.as_gymnasium())
    assert env.num_envs == 3 * NB and env.unwrapped.agents == ["blue_0", "blue_1"]
    assert env.action_space.shape == (6,) and env.observation_space.shape == (6, native.obs_dim)
    obs, _ = env.reset(seed=5)
    np.testing.assert_array_equal(obs, twin.reset(seed=5).reshape(6, -1).numpy())
    gen = torch.Generator().manual_seed(0)
    for t in range(12):
        actions = blue_actions(gen, (3, NB))
        obs, rewards, terms, truncs, infos = env.step(actions.reshape(-1).numpy())
        obs_t, rewards_t, _, truncated_t, infos_t = twin.step(actions)
        np.testing.assert_array_equal(obs, obs_t.reshape(6, -1).numpy())
        np.testing.assert_array_equal(rewards, rewards_t.reshape(-1).numpy())
    assert truncs.all() and truncated_t.all()
    np.testing.assert_array_equal(infos["final_info"]["score_for"], np.repeat(infos_t["final_score"][:, 0].numpy(), NB))
    np.testing.assert_array_equal(np.stack(infos["final_obs"]), infos_t["final_obs"].reshape(6, -1).numpy())
    np.testing.assert_allclose(infos["episode"]["r"], infos_t["episode_return"].reshape(-1).numpy(), rtol=1e-5)


# ---------------------------------------------------------------------------------- checkpoint opponent
@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A tiny random policy, saved with the project's checkpoint writer."""
    torch.manual_seed(0)
    config = SoccerConfig(team_size=2)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    write_policy(folder, SoccerPolicy(config, hidden=16, device="cpu"), config, {"name": "tiny"})
    return folder


def test_a_checkpoint_plays_red_with_its_policys_actions(checkpoint):
    config = SoccerConfig(team_size=2)
    red = load_policy_opponent(checkpoint, config, seed=99, device="cpu")
    played = []
    act = red.act
    red.act = lambda obs: played.append((obs.clone(), act(obs))) or played[-1][1]
    inside = SoccerVecEnv(num_envs=4, team_size=2, max_cycles=20, device="cpu", opponent=red)
    outside = SoccerVecEnv(num_envs=4, team_size=2, max_cycles=20, device="cpu")
    twin, _ = load_policy(checkpoint, device="cpu")
    gen = torch.Generator().manual_seed(8)  # reset(seed=8) re-seeds the opponent's stream with 8
    obs_i, obs_o = inside.reset(seed=8), outside.reset(seed=8)
    for step in range(15):
        blue = torch.full((4, NB), step % 10)
        with torch.no_grad():
            expected, _ = sample_actions(twin(obs_o[:, NB:]), False, gen)
        step_o = outside.step(torch.cat([blue, expected], 1))
        step_i = inside.step(blue)
        assert torch.equal(played[-1][0], obs_o[:, NB:]) and torch.equal(played[-1][1], expected)
        assert_same_step(step_i, step_o, slice(0, NB))
        obs_o = step_o[0]
    assert len({tuple(a.flatten().tolist()) for _, a in played}) > 5  # a sampled policy, not a constant
    # the PettingZoo env takes it too (B = 1)
    env = soccer_v0.parallel_env(team_size=2, max_cycles=10, opponent=load_policy_opponent(checkpoint, config))
    obs, _ = env.reset(seed=0)
    while env.agents:
        obs, *_ = env.step({a: 0 for a in env.agents})
    assert list(obs) == ["blue_0", "blue_1"]


def test_a_checkpoint_for_other_team_sizes_is_refused_by_the_loader(checkpoint):
    with pytest.raises(ValueError, match=f"opponent='{checkpoint}'.*3v3"):
        load_policy_opponent(checkpoint, SoccerConfig(team_size=3), device="cpu")


def test_the_bots_moved_to_envs_and_agents_still_exports_them():
    for name in ("make_bot", "Bot", "BOT_NAMES", "TeamBot", "ChaserBot", "RandomBot", "ObsView", "direction_to_action"):
        assert getattr(marl_grpo.agents, name) is getattr(marl_grpo.envs.bots, name)
        assert name in marl_grpo.agents.__all__
    assert marl_grpo.agents.BOT_NAMES == ("random", "chaser", "team")
    assert "PolicyOpponent" in marl_grpo.agents.__all__ and "load_policy_opponent" in marl_grpo.agents.__all__


# ---------------------------------------------------------------------------------- bad input
BUILDERS = {
    "parallel_env": lambda **kw: soccer_v0.parallel_env(team_size=2, **kw),
    "env": lambda **kw: soccer_v0.env(team_size=2, **kw),
    "SoccerVecEnv": lambda **kw: SoccerVecEnv(num_envs=2, team_size=2, device="cpu", **kw),
}


class _Plays:
    """An opponent that always stays, in a given shape."""

    def __init__(self, shape):
        self.shape = shape

    def act(self, red_obs):
        return torch.zeros(self.shape if self.shape else red_obs.shape[:-1], dtype=torch.long)


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("kwargs, match", [
    (dict(opponent="teams"), r"opponent='teams' is invalid: expected None .*\['random', 'chaser', 'team'\].*"
                             r"opponent=marl_grpo\.agents\.load_policy_opponent\(path, env_config\)"),
    (dict(opponent="runs/2v2/checkpoint"), r"opponent='runs/2v2/checkpoint' is invalid: .*load_policy_opponent"),
    (dict(opponent=Path("runs/2v2/checkpoint")), r"opponent=.*PosixPath.* is invalid: .*load_policy_opponent"),
    (dict(opponent=object()), r"opponent=<object object .* is invalid: .*act\(red_obs"),
    (dict(opponent="team", opponent_strength=1.5), r"opponent_strength=1\.5 is invalid: expected a number in \[0, 1\]"),
    (dict(opponent="random", opponent_strength=-0.1), r"opponent_strength=-0\.1 is invalid"),
    (dict(opponent="team", opponent_strength=True), r"opponent_strength=True is invalid"),
    (dict(opponent_strength=0.5), r"opponent_strength=0\.5 is invalid with opponent=None: it weakens a scripted bot"),
    (dict(opponent=make_bot("team", SoccerConfig(team_size=3))),
     r"opponent=TeamBot\(.*\) is invalid: it was built for 3v3 matches .* but this env plays 2v2"),
])
def test_bad_opponents_get_one_line(builder, kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        BUILDERS[builder](**kwargs)
    assert "\n" not in str(err.value)


def test_an_opponent_playing_the_wrong_shape_or_out_of_range_is_refused_at_step():
    env = SoccerVecEnv(num_envs=2, team_size=2, device="cpu", opponent=_Plays((2, 3)))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"returned actions of shape \(2, 3\) .*expected \(2, 2\), one per red player"):
        env.step(torch.zeros(2, NB, dtype=torch.long))
    env = soccer_v0.parallel_env(team_size=2, opponent=_Plays((1, 1)))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"returned actions of shape \(1, 1\)"):
        env.step({"blue_0": 0, "blue_1": 0})
    bad = _Plays(None)
    bad.act = lambda red_obs: torch.full(red_obs.shape[:-1], 10)
    env = soccer_v0.parallel_env(team_size=2, opponent=bad)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"returned an action outside \[0, 9\]"):
        env.step({"blue_0": 0, "blue_1": 0})


def test_blues_actions_only_and_no_branch_with_an_opponent():
    env = SoccerVecEnv(num_envs=2, team_size=2, device="cpu", opponent="team")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must have shape \(num_envs, n_blue\) = \(2, 2\).*got \(2, 4\)"):
        env.step(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"branch\(\) needs red driven from outside \(opponent=None\)"):
        env.branch([0], 2)
    penv = soccer_v0.parallel_env(team_size=2, opponent="team")
    penv.reset(seed=0)
    with pytest.raises(KeyError, match="red_0"):
        penv.step({"blue_0": 0, "blue_1": 0, "red_0": 0})
