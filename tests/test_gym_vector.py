"""SoccerVecEnv.as_gymnasium(): a gymnasium VectorEnv with one sub-env per player, checked value by value
against the native env, against SyncVectorEnv's info layout and with gymnasium's vector wrappers."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # before pygame is imported anywhere
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from gymnasium.wrappers.vector import DictInfoToList, RecordEpisodeStatistics

from marl_grpo.envs import REWARD_COMPONENTS, SoccerVecEnv
from marl_grpo.envs.gym_vector import SoccerGymVectorEnv

INFO_KEYS = [f"reward_{name}" for name in REWARD_COMPONENTS] + ["score_for", "score_against"]


def make_pair(B: int, device: str, **kwargs):
    """(gymnasium view, native reference): two identical batches."""
    return SoccerVecEnv(num_envs=B, device=device, **kwargs).as_gymnasium(), SoccerVecEnv(num_envs=B, device=device, **kwargs)


def score_goal(env: SoccerVecEnv, match: int) -> None:
    """Put match `match`'s ball just before the red goal line, rolling in: blue scores on the next step."""
    state = env.get_state()
    state["ball_x"][match] = 0.99 * env.config.resolved_half_length
    state["ball_y"][match] = 0.0
    state["ball_vx"][match] = 0.1
    state["ball_vy"][match] = 0.0
    env.set_state(state)


def np_(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def expected_infos(genv: SoccerGymVectorEnv, native: dict, done_match: np.ndarray) -> dict:
    """What SyncVectorEnv(SAME_STEP) builds, sub-env by sub-env with VectorEnv._add_info, from the
    per-player infos of the PettingZoo env (np.float32 reward components, np.int64 scores)."""
    B, N = genv.num_matches, genv.num_agents
    n_blue = genv.env.config.n_blue
    comps = {k: np_(native[k]) for k in INFO_KEYS[:-2]}
    score, final_score = np_(native["score"]), np_(native["final_score"])
    final_obs = np_(native["final_obs"])
    infos: dict = {}
    for b in range(B):
        for i in range(N):
            mine, theirs = (0, 1) if i < n_blue else (1, 0)

            def info(sc):
                d = {k: np.float32(v[b, i]) for k, v in comps.items()}
                d.update(score_for=np.int64(sc[b, mine]), score_against=np.int64(sc[b, theirs]))
                return d

            if done_match[b]:
                infos = genv._add_info(infos, {"final_obs": final_obs[b, i], "final_info": info(final_score)}, b * N + i)
                reset_info = {k: np.float32(0.0) for k in comps}
                reset_info.update(score_for=np.int64(0), score_against=np.int64(0))
                infos = genv._add_info(infos, reset_info, b * N + i)
            else:
                infos = genv._add_info(infos, info(score), b * N + i)
    return infos


def assert_infos_equal(got: dict, want: dict, where: str = "infos") -> None:
    assert set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
    for key, w in want.items():
        g = got[key]
        if isinstance(w, dict):
            assert_infos_equal(g, w, f"{where}[{key!r}]")
            continue
        assert isinstance(g, np.ndarray) and g.dtype == w.dtype and g.shape == w.shape, \
            f"{where}[{key!r}]: {type(g)} {getattr(g, 'dtype', None)} {getattr(g, 'shape', None)} != {w.dtype} {w.shape}"
        if w.dtype == object:
            for k, (x, y) in enumerate(zip(g, w)):
                assert (x is None and y is None) or np.array_equal(x, y), f"{where}[{key!r}][{k}]"
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"{where}[{key!r}]")


# ----------------------------------------------------------------------------- spaces, metadata
def test_spaces_metadata_and_type(device):
    env = SoccerVecEnv(num_envs=3, device=device, blue_size=1, red_size=2)
    genv = env.as_gymnasium()
    assert isinstance(genv, VectorEnv) and isinstance(genv, SoccerGymVectorEnv) and genv.env is env
    assert genv.num_envs == 9 and genv.num_matches == 3 and genv.num_agents == 3
    assert genv.single_observation_space == env.single_observation_space
    assert genv.single_action_space == gymnasium.spaces.Discrete(10)
    assert genv.observation_space == batch_space(env.single_observation_space, 9)
    assert genv.observation_space.shape == (9, env.obs_dim) and genv.observation_space.dtype == np.float32
    assert genv.action_space == batch_space(gymnasium.spaces.Discrete(10), 9)
    assert genv.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert genv.metadata["render_modes"] == env.metadata["render_modes"]
    assert genv.metadata["render_fps"] == env.metadata["render_fps"]
    assert "autoreset_mode" not in SoccerVecEnv.metadata  # the wrapped env's class metadata is left alone
    assert genv.render_mode is None
    assert "3 matches x 3 players" in repr(genv)
    genv.close()
    assert genv.closed


# ----------------------------------------------------------------------------- values vs native
@pytest.mark.parametrize("kwargs", [dict(team_size=2), dict(blue_size=1, red_size=2)])
def test_step_values_equal_native(kwargs, device):
    """Obs, rewards, per-player dones and infos equal the native env's, through a truncation of every
    match (max_cycles=5), a goal (nonzero score_for / score_against) and a termination of one match."""
    B = 3
    genv, ref = make_pair(B, device, max_cycles=5, goals_to_win=2, **kwargs)
    N, D = ref.num_agents, ref.obs_dim
    obs, infos = genv.reset(seed=7)
    ref_obs = ref.reset(seed=7)
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.shape == (B * N, D)
    np.testing.assert_array_equal(obs, np_(ref_obs).reshape(B * N, D))
    assert genv.observation_space.contains(obs)
    for key in INFO_KEYS:  # reset infos: every key, zeros, all masks set
        assert infos[key].shape == (B * N,) and not infos[key].any() and infos[f"_{key}"].all()
    assert set(infos) == set(INFO_KEYS) | {f"_{k}" for k in INFO_KEYS}

    rng = np.random.default_rng(0)
    seen_done = seen_partial = seen_score = False
    for t in range(1, 12):
        if t in (2, 3):  # blue scores in match 1 at t=2 and t=3 (goals_to_win=2): a termination at t=3
            score_goal(genv.env, 1)
            score_goal(ref, 1)
        actions = rng.integers(0, 10, size=B * N)
        obs, rew, term, trunc, infos = genv.step(actions if t % 2 else actions.tolist())
        r_obs, r_rew, r_term, r_trunc, r_infos = ref.step(torch.as_tensor(actions.reshape(B, N)))
        np.testing.assert_array_equal(obs, np_(r_obs).reshape(B * N, D))
        assert rew.shape == (B * N,) and rew.dtype == np.float32
        np.testing.assert_array_equal(rew, np_(r_rew).reshape(B * N))
        assert term.dtype == np.bool_ and trunc.dtype == np.bool_
        np.testing.assert_array_equal(term, np.repeat(np_(r_term), N))
        np.testing.assert_array_equal(trunc, np.repeat(np_(r_trunc), N))
        assert genv.observation_space.contains(obs)
        done_match = np_(r_term | r_trunc)
        assert_infos_equal(infos, expected_infos(genv, r_infos, done_match), f"step {t} infos")
        # spelled out once more, against the native tensors
        done = np.repeat(done_match, N)
        for k in INFO_KEYS[:-2]:
            np.testing.assert_array_equal(infos[k], np.where(done, 0.0, np_(r_infos[k]).reshape(-1)))
        np.testing.assert_allclose(sum(infos[k] for k in INFO_KEYS[:-2])[~done], rew[~done], atol=1e-6)
        if done.any():
            seen_done = True
            seen_partial |= not done.all()
            assert infos["_final_obs"].tolist() == done.tolist() and infos["_final_info"].tolist() == done.tolist()
            assert infos["final_obs"].dtype == object
            final_obs = np_(r_infos["final_obs"]).reshape(B * N, D)
            for k in range(B * N):
                if done[k]:
                    np.testing.assert_array_equal(infos["final_obs"][k], final_obs[k])
                else:
                    assert infos["final_obs"][k] is None
            fi = infos["final_info"]
            np.testing.assert_allclose(sum(fi[k] for k in INFO_KEYS[:-2])[done], rew[done], atol=1e-6)
        else:
            assert "final_obs" not in infos and "final_info" not in infos
        if t == 3:  # match 1 ended 2 - 0 for blue: each player sees its own side of the final score
            assert r_term.tolist() == [False, True, False]
            blue = np.arange(N) < ref.config.n_blue
            np.testing.assert_array_equal(infos["final_info"]["score_for"][N:2 * N], np.where(blue, 2, 0))
            np.testing.assert_array_equal(infos["final_info"]["score_against"][N:2 * N], np.where(blue, 0, 2))
            np.testing.assert_array_equal(infos["final_info"]["reward_goal"][N:2 * N], np.where(blue, 1.0, -1.0))
            assert (infos["score_for"][N:2 * N] == 0).all()  # top level: the new match's reset infos
        if t == 2:
            blue = np.arange(N) < ref.config.n_blue
            np.testing.assert_array_equal(infos["score_for"][N:2 * N], np.where(blue, 1, 0))
            np.testing.assert_array_equal(infos["score_against"][N:2 * N], np.where(blue, 0, 1))
            seen_score = True
    assert seen_done and seen_partial and seen_score


def test_returned_arrays_are_fresh(device):
    genv = SoccerVecEnv(num_envs=2, device=device, team_size=1, max_cycles=3).as_gymnasium()
    obs0, _ = genv.reset(seed=0)
    kept = obs0.copy()
    obs1, rew1, *_ = genv.step(np.full(4, 2))
    kept_rew = rew1.copy()
    genv.step(np.full(4, 9))
    np.testing.assert_array_equal(obs0, kept)
    np.testing.assert_array_equal(rew1, kept_rew)


# ----------------------------------------------------------------------------- episode statistics
def test_record_episode_statistics(device):
    """RecordEpisodeStatistics: each player's return is the native episode_return, the length is
    max_cycles for a truncated match and the goal's step for a terminated one."""
    B, N = 2, 2
    genv, ref = make_pair(B, device, team_size=1, max_cycles=5, goals_to_win=1)
    env = RecordEpisodeStatistics(genv)
    env.reset(seed=11)
    ref.reset(seed=11)
    rng = np.random.default_rng(1)
    recorded = 0
    for t in range(1, 11):
        if t == 3:
            score_goal(genv.env, 0)
            score_goal(ref, 0)
        actions = rng.integers(0, 10, size=B * N)
        _, rew, term, trunc, infos = env.step(actions)
        _, _, r_term, r_trunc, r_infos = ref.step(torch.as_tensor(actions.reshape(B, N)))
        done = np.repeat(np_(r_term | r_trunc), N)
        if not done.any():
            assert "episode" not in infos
            continue
        assert infos["_episode"].tolist() == done.tolist()
        np.testing.assert_allclose(infos["episode"]["r"][done], np_(r_infos["episode_return"]).reshape(-1)[done],
                                   rtol=0, atol=1e-5)
        np.testing.assert_array_equal(infos["episode"]["l"][done], np.repeat(np_(r_infos["episode_length"]), N)[done])
        for k in np.flatnonzero(done):
            expected = 3 if (t == 3 and k < N) else 5
            assert infos["episode"]["l"][k] == expected, (t, k)
        recorded += int(done.sum())
    # match 0: a goal at t=3, then truncated at t=8; match 1: truncated at t=5 and t=10
    assert recorded == 2 * N + 2 * N == env.episode_count
    assert sorted(env.length_queue) == [3, 3, 5, 5, 5, 5, 5, 5]


# ----------------------------------------------------------------------------- gymnasium wrappers / checks
def test_gymnasium_wrappers_and_determinism(device):
    """gymnasium has no vector env checker: check what its single-env checker does (reset and step
    determinism, spaces) and that its vector wrappers run on this env."""
    genv = SoccerVecEnv(num_envs=2, device=device, team_size=2, max_cycles=4).as_gymnasium()
    other = SoccerVecEnv(num_envs=2, device=device, team_size=2, max_cycles=4).as_gymnasium()
    genv.action_space.seed(0)
    actions = [genv.action_space.sample() for _ in range(6)]
    assert all(genv.action_space.contains(a) for a in actions)
    runs = []
    for env in (genv, other, genv):
        obs, _ = env.reset(seed=123)
        trace = [obs]
        for a in actions:
            trace.append(env.step(a)[0])
        runs.append(trace)
    for x, y, z in zip(*runs):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
    assert not np.array_equal(genv.reset(seed=1)[0], genv.reset(seed=2)[0])
    assert genv.np_random_seed == 2  # seeding of the base class
    # DictInfoToList turns the vector infos into per-sub-env dicts
    listed = DictInfoToList(SoccerVecEnv(num_envs=2, device=device, team_size=1, max_cycles=2).as_gymnasium())
    _, infos = listed.reset(seed=0)
    assert isinstance(infos, list) and len(infos) == 4 and set(infos[0]) == set(INFO_KEYS)
    listed.step(np.zeros(4, dtype=np.int64))
    _, _, _, trunc, infos = listed.step(np.zeros(4, dtype=np.int64))
    assert trunc.all() and all("final_obs" in info and "final_info" in info for info in infos)
    assert set(infos[0]["final_info"]) == set(INFO_KEYS)
    # the other common wrappers accept it
    wrapped = gymnasium.wrappers.vector.ClipReward(gymnasium.wrappers.vector.NormalizeReward(
        RecordEpisodeStatistics(genv)), -1.0, 1.0)
    wrapped.reset(seed=0)
    _, rew, *_ = wrapped.step(np.zeros(8, dtype=np.int64))
    assert rew.shape == (8,)


# ----------------------------------------------------------------------------- seeds
def test_seeds(device):
    B, N = 3, 2
    genv, ref = make_pair(B, device, team_size=1)
    obs, _ = genv.reset(seed=5)
    np.testing.assert_array_equal(obs, np_(ref.reset(seed=5)).reshape(B * N, -1))
    same, _ = genv.reset(seed=[5, 5, 6, 6, 7, 7])  # the per-sub-env seeds that seed=5 means
    np.testing.assert_array_equal(same, obs)
    genv.reset(seed=None)
    genv.reset(seed=[None] * (B * N))
    with pytest.raises(ValueError, match=r"\[s\+2\]\*2"):
        genv.reset(seed=[5, 6, 7, 8, 9, 10])  # SyncVectorEnv's list for seed=5: not what a match can do
    with pytest.raises(ValueError, match="seed"):
        genv.reset(seed=[5, 5, 6])
    with pytest.raises(TypeError, match="int >= 0 or None"):
        genv.reset(seed=True)
    with pytest.raises(TypeError, match="int >= 0 or None"):
        genv.reset(seed=1.5)


def test_partial_reset_mask(device):
    B, N = 3, 2
    genv = SoccerVecEnv(num_envs=B, device=device, team_size=1, max_cycles=50).as_gymnasium()
    env = RecordEpisodeStatistics(genv)
    lay = genv.env.config.obs_layout()
    env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(np.zeros(B * N, dtype=np.int64))
    mask = np.repeat(np.array([False, True, False]), N)
    obs2, infos = env.reset(options={"reset_mask": mask})
    assert infos["_score_for"].tolist() == mask.tolist()
    np.testing.assert_array_equal(obs2[~mask], obs[~mask])  # the other matches are untouched
    assert (obs2[mask][:, lay["time_left"]] == 1.0).all()
    assert np.allclose(obs2[~mask][:, lay["time_left"]], 1 - 3 / 50)
    assert int(genv.env.steps_in_match()[1]) == 0 and float(genv.env.get_state()["episode_return"][1].abs().sum()) == 0
    with pytest.raises(ValueError, match="all or none of the players of each match"):
        genv.reset(options={"reset_mask": np.array([True, False, False, False, False, False])})
    with pytest.raises(ValueError, match="seed cannot be combined"):
        genv.reset(seed=1, options={"reset_mask": mask})
    with pytest.raises(ValueError, match="bool numpy array of shape"):
        genv.reset(options={"reset_mask": [True] * 6})
    with pytest.raises(ValueError, match="unknown reset option"):
        genv.reset(options={"foo": 1})


# ----------------------------------------------------------------------------- bad input
def test_bad_actions(device):
    genv = SoccerVecEnv(num_envs=2, device=device, team_size=1).as_gymnasium()
    genv.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(num_envs,\) = \(4,\).*got shape \(2, 2\)"):
        genv.step(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match=r"got shape \(3,\)"):
        genv.step([0, 1, 2])
    with pytest.raises(ValueError, match=r"action 10 of sub-env 3 \(match 1, player 'red_0'\).*\[0, 9\]"):
        genv.step([0, 1, 2, 10])
    with pytest.raises(ValueError, match=r"action -1 of sub-env 0"):
        genv.step(np.array([-1, 0, 0, 0]))
    with pytest.raises(TypeError, match="integers in \\[0, 9\\], got dtype float64"):
        genv.step(np.zeros(4))
    with pytest.raises(TypeError, match="got dtype bool"):
        genv.step(np.zeros(4, dtype=bool))
    # accepted: a list, numpy of any int dtype, a torch tensor
    genv.step([0, 1, 2, 9])
    genv.step(np.array([0, 1, 2, 9], dtype=np.int32))
    genv.step(torch.tensor([0, 1, 2, 9]))


# ----------------------------------------------------------------------------- render
def test_render_rgb_array():
    env = SoccerVecEnv(num_envs=2, device="cpu", team_size=1, render_mode="rgb_array")
    genv = env.as_gymnasium()
    assert genv.render_mode == "rgb_array"
    genv.reset(seed=0)
    genv.step(np.zeros(4, dtype=np.int64))
    frames = genv.render()
    assert isinstance(frames, tuple) and len(frames) == genv.num_envs
    assert frames[0] is frames[1] and frames[2] is frames[3]  # one frame per match, shared by its players
    assert frames[0].dtype == np.uint8 and frames[0].ndim == 3 and frames[0].shape[2] == 3
    np.testing.assert_array_equal(genv.render_match(1), frames[2])
    genv.close()
    assert genv.closed and env._renderer is None
