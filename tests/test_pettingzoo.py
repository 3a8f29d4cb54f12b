"""The soccer env through the PettingZoo API: PettingZoo's own test suite, registration, pickling,
determinism, conventions, rules sanity on values and bad input."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # before pygame is imported anywhere
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pettingzoo
import pytest
from pettingzoo.test import (
    api_test,
    max_cycles_test,
    parallel_api_test,
    parallel_seed_test,
    render_test,
    seed_test,
)

import marl_grpo
import marl_grpo.envs
from marl_grpo.envs import INFO_KEYS, REWARD_COMPONENTS, SoccerConfig, soccer_v0

from helpers import scripted_action

ENV_ID = "marl_grpo/soccer-v0"
KICK = 9
EAST = 1


# ----------------------------------------------------------------------------- helpers
def mixed_actions(env, obs: dict, rng: np.random.Generator, p_scripted: float = 0.6) -> dict:
    """Every agent plays the scripted striker with probability `p_scripted`, else a random action."""
    lay = env.config.obs_layout()
    actions = {}
    for agent in env.agents:
        if rng.random() < p_scripted:
            actions[agent] = scripted_action(obs[agent], lay)
        else:
            actions[agent] = int(rng.integers(0, 10))
    return actions


def assert_step_equal(a, b, step):
    obs_a, rew_a, term_a, trunc_a, info_a = a
    obs_b, rew_b, term_b, trunc_b, info_b = b
    assert obs_a.keys() == obs_b.keys()
    for agent in obs_a:
        assert obs_a[agent].dtype == obs_b[agent].dtype == np.float32
        assert np.array_equal(obs_a[agent], obs_b[agent]), f"step {step}: observation of {agent} differs"
    assert rew_a == rew_b, f"step {step}: rewards differ"
    assert term_a == term_b, f"step {step}: terminations differ"
    assert trunc_a == trunc_b, f"step {step}: truncations differ"
    assert info_a == info_b, f"step {step}: infos differ"


# ----------------------------------------------------------------------------- PettingZoo's tests
@pytest.mark.parametrize("kwargs", [dict(team_size=2), dict(team_size=1), dict(blue_size=2, red_size=3)])
def test_parallel_api_test(kwargs):
    parallel_api_test(soccer_v0.parallel_env(max_cycles=60, **kwargs), num_cycles=100)


@pytest.mark.parametrize("kwargs", [dict(team_size=2), dict(blue_size=3, red_size=1)])
def test_aec_api_test(kwargs):
    api_test(soccer_v0.env(max_cycles=60, **kwargs), num_cycles=100)


def test_render_test_aec():
    # render_test calls env_fn(render_mode=...) for every mode in metadata["render_modes"]
    render_test(lambda render_mode=None: soccer_v0.env(render_mode=render_mode, team_size=2, max_cycles=50))


def test_render_rgb_array_parallel():
    env = soccer_v0.parallel_env(render_mode="rgb_array", team_size=2)
    env.reset(seed=0)
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    env.close()


def test_render_without_mode_warns_and_returns_none():
    env = soccer_v0.parallel_env(team_size=1)
    env.reset(seed=0)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert env.render() is None


def test_max_cycles_test():
    max_cycles_test(soccer_v0)


def test_seed_test():
    seed_test(lambda: soccer_v0.env(team_size=2, max_cycles=100), num_cycles=100)


def test_parallel_seed_test():
    parallel_seed_test(lambda: soccer_v0.parallel_env(team_size=2, max_cycles=100), num_cycles=100)


def test_pickle_round_trip():
    env = soccer_v0.parallel_env(team_size=2, max_cycles=80, kick_power=0.12)
    obs, _ = env.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(10):
        obs, *_ = env.step(mixed_actions(env, obs, rng))
    clone = pickle.loads(pickle.dumps(env))
    assert clone.possible_agents == env.possible_agents
    assert clone.config == env.config

    obs_a, _ = env.reset(seed=11)
    obs_b, _ = clone.reset(seed=11)
    for agent in env.agents:
        assert np.array_equal(obs_a[agent], obs_b[agent])
    assert np.array_equal(env.state(), clone.state())
    rng = np.random.default_rng(1)
    for step in range(80):
        actions = mixed_actions(env, obs_a, rng)
        out_a = env.step(actions)
        out_b = clone.step(dict(actions))
        assert_step_equal(out_a, out_b, step)
        assert np.array_equal(env.state(), clone.state())
        obs_a = out_a[0]
    assert not env.agents and not clone.agents


# ----------------------------------------------------------------------------- registration
def test_registration_parallel():
    env = pettingzoo.make("parallel", ENV_ID, team_size=2)
    assert isinstance(env, pettingzoo.ParallelEnv)
    assert env.possible_agents == ["blue_0", "blue_1", "red_0", "red_1"]
    obs, infos = env.reset(seed=0)
    assert set(obs) == set(env.possible_agents) == set(infos)
    assert all(info == {**{key: 0.0 for key in INFO_KEYS[:-2]}, "score_for": 0, "score_against": 0}
               for info in infos.values()), "reset must give the same flat info keys as step, zeroed"
    _, _, _, _, step_infos = env.step({a: 0 for a in env.agents})
    for agent in env.possible_agents:
        assert tuple(step_infos[agent]) == tuple(infos[agent]) == INFO_KEYS
        assert all(type(step_infos[agent][k]) is type(infos[agent][k]) for k in INFO_KEYS)


def test_import_marl_grpo_registers_the_env_without_heavy_imports():
    """In a fresh interpreter, `import marl_grpo` alone makes `pettingzoo.make` work, and loads neither
    torch nor pygame until an env is made."""
    code = (
        "import sys, marl_grpo, pettingzoo\n"
        "heavy = sorted(m for m in ('torch', 'pygame') if m in sys.modules)\n"
        "env = pettingzoo.make('parallel', 'marl_grpo/soccer-v0', team_size=1)\n"
        "aec = pettingzoo.make('aec', 'marl_grpo/soccer-v0', team_size=1)\n"
        "print(heavy, env.possible_agents, type(aec).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "SDL_VIDEODRIVER": "dummy"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] ['blue_0', 'red_0'] OrderEnforcingWrapper"
    assert marl_grpo.ENV_ID == marl_grpo.envs.ENV_ID == ENV_ID


def test_registration_aec():
    env = pettingzoo.make("aec", ENV_ID, team_size=2, max_cycles=5)
    assert isinstance(env, pettingzoo.AECEnv)
    env.reset(seed=0)
    assert env.possible_agents == ["blue_0", "blue_1", "red_0", "red_1"]
    steps = 0
    for agent in env.agent_iter():
        _, _, term, trunc, _ = env.last()
        env.step(None if term or trunc else 0)
        steps += 1
    assert steps == 4 * 5 + 4  # 5 cycles, then every agent is stepped out with None


def test_registration_unknown_kwarg():
    with pytest.raises(TypeError, match="team_sise"):
        pettingzoo.make("parallel", ENV_ID, team_sise=2)


# ----------------------------------------------------------------------------- determinism
def test_determinism_500_steps():
    kwargs = dict(team_size=2, max_cycles=500)
    env_a, env_b = soccer_v0.parallel_env(**kwargs), soccer_v0.parallel_env(**kwargs)
    obs_a, info_a = env_a.reset(seed=123)
    obs_b, info_b = env_b.reset(seed=123)
    for agent in env_a.agents:
        assert np.array_equal(obs_a[agent], obs_b[agent])
    assert info_a == info_b
    assert np.array_equal(env_a.state(), env_b.state())
    rng = np.random.default_rng(7)
    goals = 0
    for step in range(500):
        actions = mixed_actions(env_a, obs_a, rng)
        out_a = env_a.step(actions)
        out_b = env_b.step(dict(actions))
        assert_step_equal(out_a, out_b, step)
        for agent in out_a[4]:
            assert tuple(out_a[4][agent]) == INFO_KEYS
            assert out_a[4][agent]["score_for"] == out_b[4][agent]["score_for"]
        state_a, state_b = env_a.state(), env_b.state()
        assert np.array_equal(state_a, state_b), f"step {step}: state differs"
        assert np.all(np.isfinite(state_a))
        goals += out_a[4]["blue_0"]["reward_goal"] != 0
        obs_a = out_a[0]
        if step < 499:
            assert not any(out_a[3].values())
    assert all(out_a[3].values()), "the match must be truncated at step 500"
    assert goals > 0, "the scripted play should have produced goals (covering kickoffs)"


def test_different_seed_gives_different_kickoff():
    env_a, env_b = soccer_v0.parallel_env(team_size=2), soccer_v0.parallel_env(team_size=2)
    obs_a, _ = env_a.reset(seed=0)
    obs_b, _ = env_b.reset(seed=1)
    assert not np.array_equal(env_a.state(), env_b.state())
    assert any(not np.array_equal(obs_a[a], obs_b[a]) for a in obs_a)


def test_reset_without_seed_after_seeded_reset_is_reproducible():
    """reset() without a seed starts a new match on the same random stream."""
    env_a, env_b = soccer_v0.parallel_env(team_size=2), soccer_v0.parallel_env(team_size=2)
    first, _ = env_a.reset(seed=3)
    env_b.reset(seed=3)
    second_a, _ = env_a.reset()
    second_b, _ = env_b.reset()
    for agent in first:
        assert np.array_equal(second_a[agent], second_b[agent])
    assert any(not np.array_equal(first[a], second_a[a]) for a in first), "a new kickoff needs new jitter"


def test_returned_arrays_are_not_aliased():
    """Observations and states handed out must not change when the env steps on (and editing them
    must not change the env)."""
    env = soccer_v0.parallel_env(team_size=2, max_cycles=50)
    obs, _ = env.reset(seed=0)
    history = [({a: o.copy() for a, o in obs.items()}, obs, env.state().copy(), env.state())]
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs, *_ = env.step(mixed_actions(env, obs, rng))
        history.append(({a: o.copy() for a, o in obs.items()}, obs, env.state().copy(), env.state()))
    for saved_obs, handed_obs, saved_state, handed_state in history:
        for agent in saved_obs:
            assert np.array_equal(saved_obs[agent], handed_obs[agent]), "an earlier observation changed"
        assert np.array_equal(saved_state, handed_state), "an earlier state() changed"
    state = env.state()
    expected = state.copy()
    state[:] = 123.0
    obs["blue_0"][:] = 123.0
    assert np.array_equal(env.state(), expected)


def test_unseeded_reset_works():
    env = soccer_v0.parallel_env(team_size=1)
    obs, _ = env.reset()
    assert set(obs) == {"blue_0", "red_0"}


# ----------------------------------------------------------------------------- conventions
def test_memoised_spaces_and_metadata():
    env = soccer_v0.parallel_env(team_size=3)
    for agent in env.possible_agents:
        assert env.observation_space(agent) is env.observation_space(agent)
        assert env.action_space(agent) is env.action_space(agent)
        assert env.action_space(agent).n == 10
        assert env.observation_space(agent).dtype == np.float32
    meta = env.metadata
    assert "human" in meta["render_modes"] and "rgb_array" in meta["render_modes"]
    assert meta["render_fps"] > 0
    assert meta["name"] == "soccer_v0"
    assert meta["is_parallelizable"] is True
    with pytest.raises(KeyError, match="blue_7"):
        env.observation_space("blue_7")


@pytest.mark.parametrize(
    "kwargs, blue, red",
    [
        (dict(team_size=1), 1, 1),
        (dict(team_size=2), 2, 2),
        (dict(team_size=3), 3, 3),
        (dict(team_size=5), 5, 5),
        (dict(team_size=11), 11, 11),
        (dict(blue_size=2, red_size=3), 2, 3),
        (dict(team_size=4, red_size=1), 4, 1),
    ],
)
def test_agent_names_and_shapes(kwargs, blue, red):
    env = soccer_v0.parallel_env(**kwargs)
    expected = [f"blue_{i}" for i in range(blue)] + [f"red_{i}" for i in range(red)]
    assert env.possible_agents == expected
    assert env.agents == []
    obs, infos = env.reset(seed=0)
    assert env.agents == expected
    assert list(obs) == expected and list(infos) == expected
    config = SoccerConfig(**kwargs)
    for agent in expected:
        assert env.observation_space(agent).shape == (config.obs_dim,)
        assert obs[agent].shape == (config.obs_dim,)
        assert obs[agent].dtype == np.float32
        assert env.observation_space(agent).contains(obs[agent])
    assert env.state().shape == env.state_space.shape == (config.state_dim,)
    assert env.state().dtype == np.float32
    obs, *_ = env.step({a: 0 for a in env.agents})
    assert env.state().shape == env.state_space.shape


def test_documented_obs_dims():
    assert SoccerConfig(team_size=2).obs_dim == 35
    assert SoccerConfig(team_size=3).obs_dim == 46
    assert SoccerConfig(team_size=2).state_dim == 4 * 4 + 7


# ----------------------------------------------------------------------------- rules sanity
@pytest.mark.parametrize(
    "kwargs", [dict(team_size=1), dict(team_size=2), dict(team_size=3), dict(blue_size=2, red_size=3),
               dict(team_size=5), dict(team_size=11)]
)
def test_kickoff_mirroring(kwargs):
    env = soccer_v0.parallel_env(**kwargs)
    lay = env.config.obs_layout()
    n_blue = env.config.n_blue
    N = env.config.num_agents
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        state = env.state()
        wx, wy = state[:N], state[N : 2 * N]
        assert np.all(wx[:n_blue] < 0) and np.all(wx[n_blue:] > 0), "blue starts on the left, red on the right"
        for i, agent in enumerate(env.agents):
            o = obs[agent]
            self_x, self_y = o[lay["self_pos"]]
            assert self_x < 0, f"{agent} must see itself on its own half at kickoff"
            sign = 1.0 if agent.startswith("blue") else -1.0
            np.testing.assert_allclose([self_x, self_y], [sign * wx[i], sign * wy[i]], rtol=0, atol=1e-6)
            np.testing.assert_allclose(o[lay["own_goal_rel"]], [-1.0 - self_x, -self_y], rtol=0, atol=1e-6)
            np.testing.assert_allclose(o[lay["opp_goal_rel"]], [1.0 - self_x, -self_y], rtol=0, atol=1e-6)
            # ball at the centre spot, at rest
            np.testing.assert_allclose(o[lay["ball_rel"]], [-self_x, -self_y], rtol=0, atol=1e-6)
            assert np.all(o[lay["ball_vel"]] == 0) and np.all(o[lay["self_vel"]] == 0)
            assert o[lay["time_left"]][0] == 1.0
            assert np.all(o[lay["score"]] == 0)
            slot = int(agent.split("_")[1])
            expected_slot = np.zeros(env.config.max_team, dtype=np.float32)
            expected_slot[slot] = 1
            assert np.array_equal(o[lay["slot"]], expected_slot)
            assert np.array_equal(o[lay["team"]], [1, 0] if sign > 0 else [0, 1])
            # entity present flags: real teammates/opponents first, missing ones zero-filled
            mates = o[lay["teammates"]].reshape(-1, 5)
            opps = o[lay["opponents"]].reshape(-1, 5)
            own_n, opp_n = (env.config.n_blue, env.config.n_red) if sign > 0 else (env.config.n_red, env.config.n_blue)
            assert np.array_equal(mates[:, 4], np.arange(len(mates)) < own_n - 1)
            assert np.array_equal(opps[:, 4], np.arange(len(opps)) < opp_n)
            assert np.all(mates[own_n - 1 :] == 0) and np.all(opps[opp_n:] == 0)


def test_mirror_symmetry_without_jitter():
    """With no kickoff jitter the kickoff is point-symmetric; if each red agent copies its blue
    counterpart's action (in its own frame) the two teams see the same thing."""
    env = soccer_v0.parallel_env(team_size=2, kickoff_jitter=0.0, max_cycles=100)
    obs, _ = env.reset(seed=0)
    lay = env.config.obs_layout()
    rng = np.random.default_rng(3)
    body = slice(0, lay["slot"].start)  # everything but slot/team one-hots
    for step in range(30):
        for i in range(2):
            np.testing.assert_allclose(obs[f"blue_{i}"][body], obs[f"red_{i}"][body], rtol=0, atol=1e-4,
                                       err_msg=f"step {step}: blue_{i} and red_{i} see different pitches")
        moves = rng.integers(1, 9, size=2)
        actions = {f"blue_{i}": int(moves[i]) for i in range(2)} | {f"red_{i}": int(moves[i]) for i in range(2)}
        obs, *_ = env.step(actions)


def test_reward_components_sum_and_goal_sharing():
    env = soccer_v0.parallel_env(blue_size=2, red_size=3, max_cycles=400)
    obs, _ = env.reset(seed=2)
    rng = np.random.default_rng(5)
    blue = [a for a in env.possible_agents if a.startswith("blue")]
    red = [a for a in env.possible_agents if a.startswith("red")]
    goal_steps, prev_score = 0, [0, 0]
    while env.agents:
        obs, rewards, terms, truncs, infos = env.step(mixed_actions(env, obs, rng, p_scripted=0.8))
        for agent in rewards:
            comps = {name: infos[agent][f"reward_{name}"] for name in REWARD_COMPONENTS}
            assert tuple(infos[agent]) == INFO_KEYS
            assert rewards[agent] == pytest.approx(sum(comps.values()), abs=1e-6)
            total = np.float32(0)
            for name in REWARD_COMPONENTS:
                total = np.float32(total + np.float32(comps[name]))
            assert np.float32(rewards[agent]) == total
            assert comps["dist_to_ball"] <= 0
            assert comps["ball_touch"] in (0.0, float(np.float32(0.01)))
        goal_blue = {infos[a]["reward_goal"] for a in blue}
        goal_red = {infos[a]["reward_goal"] for a in red}
        assert len(goal_blue) == 1 and len(goal_red) == 1, "the goal reward is shared by a team"
        gb, gr = goal_blue.pop(), goal_red.pop()
        assert gb == -gr and gb in (-1.0, 0.0, 1.0)
        score = [infos["blue_0"]["score_for"], infos["blue_0"]["score_against"]]
        assert all([infos[a]["score_for"], infos[a]["score_against"]] == score for a in blue)
        assert all([infos[a]["score_against"], infos[a]["score_for"]] == score for a in red)
        assert all(type(infos[a]["score_for"]) is int and type(infos[a]["score_against"]) is int for a in infos)
        assert score[0] - prev_score[0] == (gb == 1.0) and score[1] - prev_score[1] == (gb == -1.0)
        goal_steps += gb != 0
        prev_score = score
    assert goal_steps > 0, "expected the scripted play to score"


def _play_until_first_goal(kwargs, seeds=range(10), steps=300):
    """1v1, blue runs the scripted striker (E = 1 to run at the ball, kick = 9), red stays (0)."""
    for seed in seeds:
        env = soccer_v0.parallel_env(**kwargs)
        obs, _ = env.reset(seed=seed)
        first_obs = obs
        lay = env.config.obs_layout()
        for t in range(1, steps + 1):
            action = EAST if t <= 3 else scripted_action(obs["blue_0"], lay)
            out = env.step({"blue_0": action, "red_0": 0})
            obs, rewards, terms, truncs, infos = out
            score = [infos["blue_0"]["score_for"], infos["blue_0"]["score_against"]]
            if score != [0, 0]:
                if score == [1, 0]:
                    return env, t, first_obs, out
                break  # an own goal (ball bounced off red); try the next seed
    pytest.fail("the scripted striker never scored")


def test_scripted_goal_and_kickoff():
    env, t, first_obs, (obs, rewards, terms, truncs, infos) = _play_until_first_goal(dict(team_size=1, max_cycles=400))
    lay = env.config.obs_layout()
    assert infos["blue_0"]["reward_goal"] == 1.0
    assert infos["red_0"]["reward_goal"] == -1.0
    assert rewards["blue_0"] > 0.9 and rewards["red_0"] < -0.9
    assert (infos["blue_0"]["score_for"], infos["blue_0"]["score_against"]) == (1, 0)
    assert (infos["red_0"]["score_for"], infos["red_0"]["score_against"]) == (0, 1)
    assert not any(terms.values()) and not any(truncs.values())
    assert env.agents == ["blue_0", "red_0"]
    # kickoff: ball back at the centre and at rest, players on their own halves and at rest
    state = env.state()
    N = 2
    assert np.all(state[4 * N : 4 * N + 4] == 0), "ball must be at the centre spot, at rest"
    np.testing.assert_allclose(state[4 * N + 4], 1.0 - t / 400, rtol=0, atol=1e-6)  # the clock runs on
    np.testing.assert_allclose(state[4 * N + 5 :], [0.2, 0.0], rtol=0, atol=1e-7)
    for agent in env.agents:
        o = obs[agent]
        assert o[lay["self_pos"]][0] < 0
        assert np.all(o[lay["self_vel"]] == 0) and np.all(o[lay["ball_vel"]] == 0)
        np.testing.assert_allclose(o[lay["ball_rel"]], -o[lay["self_pos"]], rtol=0, atol=1e-6)
        np.testing.assert_allclose(o[lay["time_left"]], [1.0 - t / 400], rtol=0, atol=1e-6)
    np.testing.assert_allclose(obs["blue_0"][lay["score"]], [0.2, 0.0], rtol=0, atol=1e-7)
    np.testing.assert_allclose(obs["red_0"][lay["score"]], [0.0, 0.2], rtol=0, atol=1e-7)
    assert not np.array_equal(obs["blue_0"][lay["self_pos"]], first_obs["blue_0"][lay["self_pos"]]), \
        "a new kickoff should draw new jitter"
    # play goes on after the kickoff
    obs, rewards, terms, truncs, infos = env.step({"blue_0": 0, "red_0": 0})
    assert (infos["blue_0"]["score_for"], infos["blue_0"]["score_against"]) == (1, 0)
    assert infos["blue_0"]["reward_goal"] == 0.0
    assert not any(terms.values()) and not any(truncs.values())


def test_goals_to_win_terminates():
    env, t, _, (obs, rewards, terms, truncs, infos) = _play_until_first_goal(dict(team_size=1, max_cycles=400,
                                                                                   goals_to_win=1))
    assert all(terms.values()) and not any(truncs.values())
    assert env.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step({"blue_0": 0, "red_0": 0})


def test_truncation_at_exactly_max_cycles():
    env = soccer_v0.parallel_env(team_size=2, max_cycles=7)
    obs, _ = env.reset(seed=0)
    lay = env.config.obs_layout()
    rng = np.random.default_rng(0)
    for step in range(1, 8):
        assert env.agents == env.possible_agents
        obs, rewards, terms, truncs, infos = env.step({a: int(rng.integers(0, 10)) for a in env.agents})
        assert set(truncs) == set(env.possible_agents)
        assert all(v == (step == 7) for v in truncs.values()), f"step {step}: {truncs}"
        assert not any(terms.values())
        for o in obs.values():
            np.testing.assert_allclose(o[lay["time_left"]], [1.0 - step / 7], rtol=0, atol=1e-6)
    assert env.agents == []
    assert env.state()[-3] == pytest.approx(0.0, abs=1e-6)
    # a new match after reset()
    obs, _ = env.reset()
    assert env.agents == env.possible_agents
    assert all(o[lay["time_left"]][0] == 1.0 for o in obs.values())


# ----------------------------------------------------------------------------- bad input
def test_unknown_kwarg_raises_naming_it():
    with pytest.raises(TypeError, match="kick_powr"):
        soccer_v0.parallel_env(kick_powr=0.1)
    with pytest.raises(TypeError, match="teamsize"):
        soccer_v0.env(teamsize=2)


@pytest.mark.parametrize("kwargs", [dict(team_size=0), dict(team_size=12), dict(blue_size=0),
                                    dict(red_size=12), dict(team_size=2.0), dict(max_cycles=0)])
def test_invalid_sizes_raise(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        soccer_v0.parallel_env(**kwargs)


def test_invalid_render_mode_raises():
    with pytest.raises(ValueError, match="render_mode"):
        soccer_v0.parallel_env(render_mode="ansi")


@pytest.mark.parametrize("bad", [10, -1, 100])
def test_out_of_range_action_raises(bad):
    env = soccer_v0.parallel_env(team_size=1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"action {bad} for 'red_0' is outside the action space"):
        env.step({"blue_0": 0, "red_0": bad})


@pytest.mark.parametrize("bad", [1.0, 1.5, "1", None, np.float32(2.0), np.array([1])])
def test_non_integer_action_raises(bad):
    env = soccer_v0.parallel_env(team_size=1)
    env.reset(seed=0)
    with pytest.raises(TypeError, match="blue_0.*must be an int"):
        env.step({"blue_0": bad, "red_0": 0})


def test_numpy_integer_actions_accepted():
    """numpy integers act exactly like the same Python ints."""
    env, same = soccer_v0.parallel_env(team_size=1), soccer_v0.parallel_env(team_size=1)
    env.reset(seed=0)
    same.reset(seed=0)
    for numpy_actions, ints in (({"blue_0": np.int64(9), "red_0": np.array(3)}, {"blue_0": 9, "red_0": 3}),
                                ({"blue_0": np.int8(1), "red_0": np.uint8(2)}, {"blue_0": 1, "red_0": 2})):
        env.step(numpy_actions)
        same.step(ints)
        assert np.array_equal(env.state(), same.state())
    start = soccer_v0.parallel_env(team_size=1)
    start.reset(seed=0)
    assert not np.array_equal(env.state(), start.state())  # the actions did move the players


def test_missing_action_raises():
    env = soccer_v0.parallel_env(team_size=2)
    env.reset(seed=0)
    with pytest.raises(KeyError, match="red_1"):
        env.step({"blue_0": 0, "blue_1": 0, "red_0": 0})


def test_step_before_reset_raises():
    env = soccer_v0.parallel_env(team_size=1)
    with pytest.raises(RuntimeError, match="reset"):
        env.step({"blue_0": 0, "red_0": 0})


def test_bad_action_leaves_env_unchanged():
    env = soccer_v0.parallel_env(team_size=1)
    env.reset(seed=0)
    before = env.state().copy()
    with pytest.raises(ValueError):
        env.step({"blue_0": 1, "red_0": 10})
    assert np.array_equal(env.state(), before)
