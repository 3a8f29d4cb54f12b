"""SoccerVecEnv: shapes, exact parity with the PettingZoo env, auto-reset, branch, snapshots, bad input."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # before pygame is imported anywhere
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import numpy as np
import pytest
import torch

from marl_grpo.envs import REWARD_COMPONENTS, SoccerConfig, SoccerVecEnv, soccer_v0

from helpers import scripted_action

KICK = 9


# ----------------------------------------------------------------------------- helpers
def mixed_batch_actions(obs: torch.Tensor, lay: dict, rng: np.random.Generator, p_scripted=0.6) -> torch.Tensor:
    """[B, N] int64: each agent plays the scripted striker with probability p_scripted, else random."""
    o = obs.cpu().numpy()
    B, N = o.shape[:2]
    actions = rng.integers(0, 10, size=(B, N))
    use = rng.random((B, N)) < p_scripted
    for b in range(B):
        for i in range(N):
            if use[b, i]:
                actions[b, i] = scripted_action(o[b, i], lay)
    return torch.as_tensor(actions, dtype=torch.int64)


def make_vec(num_envs: int, device: str, **kwargs) -> SoccerVecEnv:
    return SoccerVecEnv(num_envs=num_envs, device=device, **kwargs)


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("kwargs", [dict(team_size=2), dict(blue_size=2, red_size=3)])
def test_shapes_and_dtypes(kwargs, device):
    B = 3
    env = make_vec(B, device, max_cycles=20, **kwargs)
    config = SoccerConfig(**kwargs)
    N, D = config.num_agents, config.obs_dim
    assert env.num_envs == B and env.num_agents == N and env.obs_dim == D
    assert env.agents == config.agents
    assert env.single_observation_space.shape == (D,)
    assert env.single_action_space.n == 10
    assert env.observation_space.shape == (B, N, D)
    assert env.action_space.shape == (B, N)
    obs = env.reset(seed=0)
    assert isinstance(obs, torch.Tensor)
    assert obs.shape == (B, N, D) and obs.dtype == torch.float32 and obs.device.type == device
    assert env.state().shape == (B, config.state_dim) and env.state().dtype == torch.float32
    actions = torch.randint(0, 10, (B, N))
    obs, rewards, terminated, truncated, infos = env.step(actions)
    assert obs.shape == (B, N, D) and obs.dtype == torch.float32
    assert rewards.shape == (B, N) and rewards.dtype == torch.float32
    assert terminated.shape == (B,) and terminated.dtype == torch.bool
    assert truncated.shape == (B,) and truncated.dtype == torch.bool
    parts = [infos[f"reward_{name}"] for name in REWARD_COMPONENTS]
    assert "reward_components" not in infos
    for value in parts:
        assert value.shape == (B, N)
    torch.testing.assert_close(sum(parts), rewards, rtol=0, atol=1e-6)
    assert infos["score"].shape == (B, 2)
    assert infos["final_obs"].shape == (B, N, D)
    assert infos["episode_return"].shape == (B, N)
    assert infos["episode_length"].shape == (B,)
    assert infos["final_score"].shape == (B, 2)
    assert env.state().shape == (B, config.state_dim)


def test_match_seeds(device):
    """Match b of a batch reset with seed s is match 0 of a batch reset with seed s + b."""
    env = make_vec(4, device, team_size=2)
    obs = env.reset(seed=10)
    for b in range(4):
        single = make_vec(1, device, team_size=2)
        assert torch.equal(single.reset(seed=10 + b)[0], obs[b])
    assert not torch.equal(obs[0], obs[1])


# ----------------------------------------------------------------------------- parity with PettingZoo
@pytest.mark.parametrize(
    "kwargs", [dict(team_size=1), dict(team_size=2), dict(team_size=3), dict(blue_size=2, red_size=3)],
    ids=["1v1", "2v2", "3v3", "2v3"],
)
def test_parity_with_pettingzoo(kwargs):
    seed, T, B = 17, 200, 4
    pz = soccer_v0.parallel_env(max_cycles=T, **kwargs)
    vec = make_vec(B, "cpu", max_cycles=T, **kwargs)  # bit-identity with numpy is a CPU property
    agents = pz.possible_agents
    lay = pz.config.obs_layout()
    N = len(agents)
    rng = np.random.default_rng(seed)

    pz_obs, _ = pz.reset(seed=seed)
    vec_obs = vec.reset(seed=seed)

    def check_obs(pz_obs, vec_obs0, what):
        stacked = np.stack([pz_obs[a] for a in agents])
        assert np.array_equal(stacked, vec_obs0.numpy()), f"{what}: observations differ"

    check_obs(pz_obs, vec_obs[0], "reset")
    assert np.array_equal(pz.state(), vec.state()[0].numpy())

    returns = np.zeros(N, dtype=np.float64)
    goals = 0
    for t in range(1, T + 21):
        actions = mixed_batch_actions(vec_obs, lay, rng)
        pz_out = pz.step({a: int(actions[0, i]) for i, a in enumerate(agents)})
        pz_obs, pz_rew, pz_term, pz_trunc, pz_info = pz_out
        vec_obs, rew, term, trunc, infos = vec.step(actions)
        step_t = t if t <= T else t - T  # steps into the current match

        assert np.array_equal(np.array([pz_rew[a] for a in agents], dtype=np.float32), rew[0].numpy()), \
            f"step {t}: rewards differ"
        for name in REWARD_COMPONENTS:
            pz_comp = np.array([pz_info[a][f"reward_{name}"] for a in agents], dtype=np.float32)
            assert np.array_equal(pz_comp, infos[f"reward_{name}"][0].numpy()), \
                f"step {t}: reward component {name} differs"
        assert bool(term[0]) == pz_term[agents[0]] and bool(trunc[0]) == pz_trunc[agents[0]], f"step {t}"
        assert all(pz_term[a] == pz_term[agents[0]] and pz_trunc[a] == pz_trunc[agents[0]] for a in agents)
        returns += [pz_rew[a] for a in agents]
        goals += pz_info[agents[0]]["reward_goal"] != 0

        if step_t < T:
            assert not bool(trunc[0]) and not bool(term[0])
            check_obs(pz_obs, vec_obs[0], f"step {t}")
            assert np.array_equal(pz.state(), vec.state()[0].numpy()), f"step {t}: state differs"
            assert [pz_info[agents[0]]["score_for"], pz_info[agents[0]]["score_against"]] == infos["score"][0].tolist()
            continue

        # the truncation step: the vector env has already started the next match
        assert t == T and bool(trunc[0]) and all(pz_trunc.values())
        check_obs(pz_obs, infos["final_obs"][0], "final_obs")
        assert infos["final_score"][0].tolist() == [pz_info[agents[0]]["score_for"], pz_info[agents[0]]["score_against"]]
        np.testing.assert_allclose(infos["episode_return"][0].numpy(), returns, rtol=1e-5, atol=1e-4)
        assert int(infos["episode_length"][0]) == T
        assert torch.all(vec_obs[0, :, lay["time_left"]] == 1.0), "auto-reset must return a fresh kickoff"
        assert torch.all(vec_obs[0, :, lay["score"]] == 0) and infos["score"][0].tolist() == [0, 0]
        assert torch.all(vec.state()[0, : 4 * N][N * 2 :] == 0), "players at rest after the auto-reset"
        # PettingZoo's reset() without a seed continues the same random stream: same new kickoff
        pz_obs, _ = pz.reset()
        check_obs(pz_obs, vec_obs[0], "kickoff after auto-reset")
        assert np.array_equal(pz.state(), vec.state()[0].numpy())
        returns[:] = 0
        # every match was truncated at the same step (all started together)
        assert torch.all(trunc) and not torch.any(term)
        assert torch.all(infos["episode_length"] == T)
    assert goals > 0, "the scripted play should have scored (to cover goals and kickoffs in the parity check)"


# ----------------------------------------------------------------------------- auto-reset
def test_auto_reset_on_termination_only_where_done(device):
    """goals_to_win=1: match 0 has a scripted striker and scores; the other matches play on."""
    kwargs = dict(team_size=1, max_cycles=300, goals_to_win=1)
    B = 4
    env, ref = make_vec(B, device, **kwargs), make_vec(B, device, **kwargs)
    lay = env.config.obs_layout()
    obs = env.reset(seed=3)
    ref.reset(seed=3)
    rng = np.random.default_rng(0)
    for t in range(1, 301):
        actions = torch.as_tensor(rng.integers(0, 10, size=(B, 2)))
        ref_actions = actions.clone()
        actions[0, 0] = scripted_action(obs[0, 0].cpu().numpy(), lay)
        actions[0, 1] = 0
        ref_actions[0] = 0  # match 0 of the reference does nothing
        obs, rew, term, trunc, infos = env.step(actions)
        ref_obs, ref_rew, ref_term, ref_trunc, ref_infos = ref.step(ref_actions)
        # matches are independent: 1..B-1 are the same in both batches
        assert torch.equal(obs[1:], ref_obs[1:]) and torch.equal(rew[1:], ref_rew[1:])
        assert torch.equal(term[1:], ref_term[1:]) and torch.equal(trunc[1:], ref_trunc[1:])
        assert torch.equal(env.state()[1:], ref.state()[1:])
        if bool(term[0]):
            break
    else:
        pytest.fail("the scripted striker did not score in match 0")
    assert not bool(trunc[0])
    assert infos["final_score"][0].tolist() in ([1, 0], [0, 1])
    assert int(infos["episode_length"][0]) == t
    final_score_obs = infos["final_obs"][0, :, lay["score"]].cpu()
    torch.testing.assert_close(final_score_obs.sum(-1), torch.full((2,), 0.2), msg="final_obs shows the final score")
    assert torch.all(obs[0, :, lay["time_left"]] == 1.0) and torch.all(obs[0, :, lay["score"]] == 0)
    assert infos["score"][0].tolist() == [0, 0]
    # the others keep their clock unless they ended too
    still = ~(term | trunc)
    assert bool(still[1:].any()), "some other match should still be running"
    expected_time = 1.0 - t / 300
    for b in range(1, B):
        if bool(still[b]):
            np.testing.assert_allclose(obs[b, :, lay["time_left"]].cpu().numpy(), expected_time, rtol=0, atol=1e-6)
    # the finished match's return restarts from zero
    obs, rew, *_ , infos = env.step(torch.zeros(B, 2, dtype=torch.int64))
    torch.testing.assert_close(infos["episode_return"][0], rew[0], rtol=0, atol=0)
    assert int(infos["episode_length"][0]) == 1


def test_final_infos_not_aliased_by_later_steps(device):
    """Tensors handed out in infos must not change when the env steps on."""
    env = make_vec(2, device, team_size=2, max_cycles=5)
    env.reset(seed=0)
    zeros = torch.zeros(2, 4, dtype=torch.int64)
    for _ in range(5):
        obs, rew, term, trunc, infos = env.step(torch.randint(0, 10, (2, 4)))
    assert torch.all(trunc)
    saved = {k: (v.clone() if isinstance(v, torch.Tensor) else {n: c.clone() for n, c in v.items()})
             for k, v in infos.items()}
    obs_saved = obs.clone()
    for _ in range(3):
        env.step(zeros)
    for k, v in infos.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, saved[k]), f"infos[{k!r}] changed after later steps"
        else:
            for n, c in v.items():
                assert torch.equal(c, saved[k][n]), f"infos[{k!r}][{n!r}] changed after later steps"
    assert torch.equal(obs, obs_saved)
    assert torch.all(saved["episode_length"] == 5)


# ----------------------------------------------------------------------------- branch
def _snapshot(env):
    return {k: v.clone() for k, v in env.get_state().items()}


def _match_entry(value: torch.Tensor, b: int, num_envs: int) -> torch.Tensor:
    """Match `b` of one `get_state()` entry, whatever axis holds the matches (the engine's layout
    is internal): the tests use a num_envs that differs from every other dimension."""
    axes = [d for d, size in enumerate(value.shape) if size == num_envs]
    assert len(axes) == 1, f"ambiguous match axis in shape {tuple(value.shape)}"
    return value.select(axes[0], b)


def test_branch_copies_matches(device):
    B, G = 6, 3
    env = make_vec(B, device, team_size=2, max_cycles=300)
    lay = env.config.obs_layout()
    obs = env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(25):
        obs, *_ = env.step(mixed_batch_actions(obs, lay, rng))
    before = _snapshot(env)
    obs_before = obs.clone()
    global_before = env.state().clone()
    src = [4, 1]
    new_obs = env.branch(src, G)
    after = env.get_state()
    assert set(after) == set(before)
    for i, s in enumerate(src):
        for j in range(G):
            slot = i * G + j
            for k in before:
                assert torch.equal(_match_entry(after[k], slot, B), _match_entry(before[k], s, B)), \
                    f"get_state()[{k!r}] of match {slot} != source {s}"
            assert torch.equal(new_obs[slot], obs_before[s])
    assert torch.equal(env.state(), global_before[[4, 4, 4, 1, 1, 1]])

    # equal actions: copies stay exactly identical (through goals and the truncation auto-reset)
    groups_equal_steps = 0
    for t in range(150):
        per_group = mixed_batch_actions(new_obs[::G], lay, rng)
        actions = per_group.repeat_interleave(G, 0)
        new_obs, rew, term, trunc, infos = env.step(actions)
        for i in range(len(src)):
            block = slice(i * G, (i + 1) * G)
            assert torch.all(new_obs[block] == new_obs[i * G]), f"step {t}: branches of group {i} diverged"
            assert torch.all(rew[block] == rew[i * G])
            assert torch.all(env.state()[block] == env.state()[i * G])
        groups_equal_steps += 1
    assert groups_equal_steps == 150


def test_branch_different_actions_diverge(device):
    env = make_vec(4, device, team_size=2, max_cycles=300)
    env.reset(seed=2)
    env.step(torch.randint(0, 10, (4, 4)))
    env.branch([0], 4)
    actions = torch.tensor([[1] * 4, [5] * 4, [3] * 4, [7] * 4])
    for _ in range(5):
        obs, *_ = env.step(actions)
    for a in range(4):
        for b in range(a + 1, 4):
            assert not torch.equal(obs[a], obs[b])


def test_branch_copies_random_stream_and_episode_return(device):
    """Copies replay the source's future exactly, including the kickoff jitter drawn at the
    auto-reset, compared with an un-branched batch that keeps playing the sources."""
    B, G, T = 4, 2, 40
    env, ref = make_vec(B, device, team_size=2, max_cycles=T), make_vec(B, device, team_size=2, max_cycles=T)
    env.reset(seed=9)
    ref.reset(seed=9)
    warm = torch.randint(0, 10, (12, B, 4), generator=torch.Generator().manual_seed(0))
    for a in warm:
        env.step(a)
        ref.step(a)
    src = torch.tensor([3, 0])
    env.branch(src, G)
    gen = torch.Generator().manual_seed(1)
    kickoffs = None
    for t in range(13, T + 10):
        ref_actions = torch.randint(0, 10, (B, 4), generator=gen)
        actions = ref_actions[src].repeat_interleave(G, 0)
        obs, rew, term, trunc, infos = env.step(actions)
        ref_obs, ref_rew, ref_term, ref_trunc, ref_infos = ref.step(ref_actions)
        for slot in range(B):
            s = int(src[slot // G])
            assert torch.equal(obs[slot], ref_obs[s]), f"step {t}: copy {slot} differs from source {s}"
            assert torch.equal(rew[slot], ref_rew[s])
            assert bool(trunc[slot]) == bool(ref_trunc[s]) and bool(term[slot]) == bool(ref_term[s])
            assert torch.equal(infos["episode_return"][slot], ref_infos["episode_return"][s])
            assert torch.equal(infos["episode_length"][slot], ref_infos["episode_length"][s])
        if t == T:
            assert torch.all(trunc)
            kickoffs = obs.clone()
    assert kickoffs is not None
    # kickoff jitter after the auto-reset: identical within a group, different between groups
    assert torch.equal(kickoffs[0], kickoffs[1]) and torch.equal(kickoffs[2], kickoffs[3])
    assert not torch.equal(kickoffs[0], kickoffs[2])


def test_branch_identity_and_validation(device):
    env = make_vec(4, device, team_size=1, max_cycles=50)
    env.reset(seed=0)
    env.step(torch.randint(0, 10, (4, 2)))
    before = _snapshot(env)
    env.branch([0, 1, 2, 3], 1)  # identity
    for k, v in env.get_state().items():
        assert torch.equal(v, before[k])
    with pytest.raises(ValueError, match="num_envs"):
        env.branch([0, 1], 3)
    with pytest.raises(ValueError, match="num_envs"):
        env.branch([0, 1, 2], 1)
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        env.branch([0, 4], 2)
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        env.branch([-1, 0], 2)
    with pytest.raises(TypeError, match="integer"):
        env.branch([0.0, 1.0], 2)
    with pytest.raises(TypeError, match="integer"):
        env.branch(torch.tensor([True, False]), 2)
    with pytest.raises(ValueError, match="group_size"):
        env.branch([0, 1, 2, 3, 0, 1, 2, 3], 0)
    with pytest.raises(ValueError, match="group_size"):
        env.branch([0, 1], 2.0)
    # a failed branch leaves the batch untouched
    for k, v in env.get_state().items():
        assert torch.equal(v, before[k])


def test_branch_accepts_numpy_and_tensor_indices(device):
    env = make_vec(4, device, team_size=1, max_cycles=50)
    env.reset(seed=0)
    env.step(torch.randint(0, 10, (4, 2)))
    state = env.state().clone()
    env.branch(np.array([2, 3]), 2)
    assert torch.equal(env.state(), state[[2, 2, 3, 3]])
    env.branch(torch.tensor([1], dtype=torch.int32), 4)
    assert torch.equal(env.state(), state[[2, 2, 2, 2]])


# ----------------------------------------------------------------------------- snapshots
def test_get_set_state_round_trip(device):
    B, T = 3, 30
    env = make_vec(B, device, team_size=2, max_cycles=T)
    lay = env.config.obs_layout()
    obs = env.reset(seed=4)
    rng = np.random.default_rng(2)
    for _ in range(10):
        obs, *_ = env.step(mixed_batch_actions(obs, lay, rng))
    snap = env.get_state()
    obs_at_snap = obs.clone()
    state_at_snap = env.state().clone()
    actions = [mixed_batch_actions(obs, lay, rng) for _ in range(40)]  # crosses the truncation at T
    first = [env.step(a) for a in actions]
    state_after = env.state().clone()
    # the snapshot is a copy: stepping did not change it
    restored_obs = env.set_state(snap)
    assert torch.equal(restored_obs, obs_at_snap)
    second = [env.step(a) for a in actions]
    for t, (a, b) in enumerate(zip(first, second)):
        for x, y in zip(a[:4], b[:4]):
            assert torch.equal(x, y), f"step {t} differs after set_state"
        for key in ("episode_return", "episode_length", "final_obs", "score"):
            assert torch.equal(a[4][key], b[4][key]), f"step {t}: infos[{key!r}] differs"
    assert torch.equal(env.state(), state_after)
    # set_state copies: changing the snapshot afterwards does not change the env
    restored_obs = env.set_state(snap)
    snap["x"].add_(1.0)
    assert torch.equal(env.state(), state_at_snap)


def test_set_state_rejects_bad_snapshots(device):
    env = make_vec(2, device, team_size=1)
    env.reset(seed=0)
    snap = env.get_state()
    bad = dict(snap)
    del bad["ball_x"]
    with pytest.raises(KeyError, match="ball_x"):
        env.set_state(bad)
    other = make_vec(3, device, team_size=1)
    other.reset(seed=0)
    with pytest.raises(ValueError, match="num_envs"):
        env.set_state(other.get_state())


# ----------------------------------------------------------------------------- bad input
def test_bad_actions_raise(device):
    env = make_vec(2, device, team_size=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape.*\(2, 4\)"):
        env.step(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"shape.*\(2, 4\)"):
        env.step(torch.zeros(8, dtype=torch.int64))
    with pytest.raises(ValueError, match="action 10 is outside the action space"):
        env.step(torch.full((2, 4), 10))
    with pytest.raises(ValueError, match="action -1 is outside the action space"):
        env.step(torch.tensor([[0, 0, 0, -1], [0, 0, 0, 0]]))
    with pytest.raises(TypeError, match="integers"):
        env.step(torch.zeros(2, 4))
    with pytest.raises(TypeError, match="integers"):
        env.step(np.zeros((2, 4), dtype=np.float64))
    with pytest.raises(TypeError, match="integers"):
        env.step(torch.zeros(2, 4, dtype=torch.bool))
    # still usable afterwards
    env.step(np.zeros((2, 4), dtype=np.int64))
    env.step([[0, 1, 2, 3], [4, 5, 6, 9]])


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.int8, torch.uint8], ids=str)
def test_integer_action_dtypes(dtype, device):
    """Every integer dtype `check_actions` accepts must play like int64 (or be rejected clearly)."""
    env, ref = make_vec(2, device, team_size=2, max_cycles=50), make_vec(2, device, team_size=2, max_cycles=50)
    env.reset(seed=0)
    ref.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        actions = torch.randint(0, 10, (2, 4), generator=gen)
        try:
            out = env.step(actions.to(dtype))
        except (TypeError, ValueError) as err:  # a clear rejection is acceptable
            assert "dtype" in str(err) or "integer" in str(err)
            return
        ref_out = ref.step(actions)
        for x, y in zip(out[:4], ref_out[:4]):
            assert torch.equal(x, y)


def test_constructor_validation():
    with pytest.raises(TypeError, match="team_sise"):
        SoccerVecEnv(num_envs=2, device="cpu", team_sise=2)
    with pytest.raises(ValueError, match="team_size"):
        SoccerVecEnv(num_envs=2, device="cpu", team_size=12)
    with pytest.raises(ValueError, match="team_size"):
        SoccerVecEnv(num_envs=2, device="cpu", team_size=0)
    with pytest.raises(ValueError, match="num_envs"):
        SoccerVecEnv(num_envs=0, device="cpu")
    with pytest.raises(ValueError, match="render_mode"):
        SoccerVecEnv(num_envs=2, device="cpu", render_mode="ansi")
    with pytest.raises(ValueError, match="device"):
        SoccerVecEnv(num_envs=2, device="tpu-ish")


def test_cuda_without_cuda_raises():
    if torch.cuda.is_available():
        env = SoccerVecEnv(num_envs=2, device="cuda", team_size=1)
        assert env.reset(seed=0).device.type == "cuda"
        return
    with pytest.raises(ValueError, match="CUDA is not available"):
        SoccerVecEnv(num_envs=2, device="cuda", team_size=1)
    with pytest.raises(ValueError, match="CUDA is not available"):
        SoccerVecEnv(num_envs=2, device="cuda:0", team_size=1)
    assert SoccerVecEnv(num_envs=2, device="auto", team_size=1).device.type == "cpu"


def test_render_needs_render_mode(device):
    env = make_vec(2, device, team_size=1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="render_mode"):
        env.render()
    env = make_vec(2, device, team_size=1, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render(1)
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    env.close()


# ----------------------------------------------------------------------------- big teams
def test_11v11_runs(device):
    env = make_vec(3, device, team_size=11, max_cycles=10)
    config = SoccerConfig(team_size=11)
    obs = env.reset(seed=0)
    assert obs.shape == (3, 22, config.obs_dim)
    lay = config.obs_layout()
    assert torch.all(obs[..., lay["self_pos"].start] < 0)
    for _ in range(12):
        obs, rew, term, trunc, infos = env.step(torch.randint(0, 10, (3, 22)))
        assert torch.isfinite(obs).all() and torch.isfinite(rew).all()
    assert env.state().shape == (3, config.state_dim)


def test_5v5_parity_short():
    """5v5 (a bigger pitch) plays the same in both envs."""
    pz = soccer_v0.parallel_env(team_size=5, max_cycles=60)
    vec = make_vec(2, "cpu", team_size=5, max_cycles=60)  # bit-identity with numpy is a CPU property
    pz_obs, _ = pz.reset(seed=5)
    obs = vec.reset(seed=5)
    agents = pz.possible_agents
    gen = torch.Generator().manual_seed(5)
    assert vec.config.resolved_half_length > 1.0
    for t in range(60):
        assert np.array_equal(np.stack([pz_obs[a] for a in agents]), obs[0].numpy()), f"step {t}"
        actions = torch.randint(0, 10, (2, 10), generator=gen)
        pz_obs, pz_rew, *_ = pz.step({a: int(actions[0, i]) for i, a in enumerate(agents)})
        obs, rew, term, trunc, infos = vec.step(actions)
        assert np.array_equal(np.array([pz_rew[a] for a in agents], dtype=np.float32), rew[0].numpy())
    assert bool(trunc.all())


# ----------------------------------------------------------------------------- observation
def reference_observation(engine) -> np.ndarray:
    """The observation entry by entry (blocks of `config.observation_features`), in float32 numpy,
    from the engine's state: what the one matrix product of `SoccerEngine.observe` must equal."""
    c, s = engine.config, {k: np.asarray(v.cpu() if hasattr(v, "cpu") else v) for k, v in engine.state.items()}
    N, M, f = c.num_agents, c.max_team, np.float32
    inv_l, inv_v = 1.0 / engine.half_length, 1.0 / c.player_max_speed
    sign = np.array([1.0] * c.n_blue + [-1.0] * c.n_red, dtype=f)[:, None]
    x, y, vx, vy = s["x"] * inv_l, s["y"] * inv_l, s["vx"] * inv_v, s["vy"] * inv_v
    ball_dx, ball_dy = (s["ball_x"] * inv_l - x) * sign, (s["ball_y"] * inv_l - y) * sign
    reach = (c.player_radius + c.ball_radius + c.kick_reach) * inv_l
    cols = [x * sign, y * sign, vx * sign, vy * sign, ball_dx, ball_dy,
            s["ball_vx"] * (sign * (1.0 / c.kick_power)), s["ball_vy"] * (sign * (1.0 / c.kick_power)),
            (reach - np.sqrt(ball_dx * ball_dx + ball_dy * ball_dy) > 0).astype(f)]
    blue, red = list(range(c.n_blue)), list(range(c.n_blue, N))
    ents = []
    for i in range(N):
        mates, opps = (blue, red) if i < c.n_blue else (red, blue)
        mates = [j for j in mates if j != i]
        ents.append(mates + [None] * (M - 1 - len(mates)) + opps + [None] * (M - len(opps)))
    for k in range(2 * M - 1):
        for part in range(5):
            col = np.zeros_like(x)
            for i in range(N):
                j = ents[i][k]
                if j is None:
                    continue
                col[i] = [(x[j] - x[i]) * sign[i], (y[j] - y[i]) * sign[i], vx[j] * sign[i], vy[j] * sign[i],
                          np.ones_like(x[i])][part]
            cols.append(col)
    score = s["score"].astype(f) * f(0.2)
    own = np.where(sign > 0, score[:, 0], score[:, 1])
    opp = np.where(sign > 0, score[:, 1], score[:, 0])
    time_left = 1.0 - s["t"].astype(f) * (1.0 / c.max_cycles)
    cols += [1.0 - x * sign, -(y * sign), -1.0 - x * sign, -(y * sign), np.broadcast_to(time_left, x.shape), own, opp]
    for k in range(M):
        cols.append(np.array([[1.0 if (i if i < c.n_blue else i - c.n_blue) == k else 0.0] for i in range(N)], f)
                    * np.ones_like(x))
    cols += [np.broadcast_to(sign > 0, x.shape).astype(f), np.broadcast_to(sign < 0, x.shape).astype(f)]
    return np.stack([np.broadcast_to(col, x.shape).astype(f) for col in cols], -1).transpose(1, 0, 2)


@pytest.mark.parametrize("kwargs", [dict(team_size=1), dict(team_size=3), dict(blue_size=2, red_size=3)])
def test_observation_matches_entry_by_entry_reference(kwargs):
    """`observe` (one matrix product) gives the entry-by-entry formulas bit for bit, also with
    torch's reduced-precision float32 matmuls switched on (it then multiplies in float64)."""
    env = make_vec(6, "cpu", max_cycles=50, goals_to_win=1, **kwargs)
    obs = env.reset(seed=4)
    rng = np.random.default_rng(0)
    lay = env.config.obs_layout()
    precision = torch.get_float32_matmul_precision()
    try:
        for t in range(60):
            assert obs.shape[-1] == lay["dim"]
            assert np.array_equal(obs.numpy(), reference_observation(env.engine)), f"step {t}"
            torch.set_float32_matmul_precision("medium" if t % 2 else "highest")
            assert torch.equal(env.engine.observe(), obs), f"step {t}: reduced matmul precision changed the obs"
            torch.set_float32_matmul_precision(precision)
            obs, *_ = env.step(mixed_batch_actions(obs, lay, rng))
    finally:
        torch.set_float32_matmul_precision(precision)


def test_compiled_env_follows_the_eager_rules():
    """`compile=True` (the rules and the observation's features through torch.compile) plays the
    same matches as the eager env up to float rounding (fused multiply-adds): through contacts,
    kicks, goals and the auto-reset at the end of the match."""
    kwargs = dict(num_envs=64, team_size=1, max_cycles=40, device="cpu")
    compiled, eager = SoccerVecEnv(compile=True, **kwargs), SoccerVecEnv(**kwargs)
    obs_c, obs_e = compiled.reset(seed=3), eager.reset(seed=3)
    assert torch.equal(obs_c, obs_e)
    rng = np.random.default_rng(0)
    lay = eager.config.obs_layout()
    resets = 0
    for step in range(60):  # 40-step matches: one auto-reset on the way
        scripted = torch.tensor([[scripted_action(o.numpy(), lay) for o in match] for match in obs_e])
        actions = torch.where(torch.from_numpy(rng.random((64, 2)) < 0.7), scripted, torch.randint(0, 10, (64, 2)))
        obs_c, rew_c, term_c, trunc_c, _ = compiled.step(actions)
        obs_e, rew_e, term_e, trunc_e, _ = eager.step(actions)
        assert torch.equal(trunc_c, trunc_e) and torch.equal(term_c, term_e), f"step {step}"
        torch.testing.assert_close(obs_c, obs_e, rtol=0, atol=1e-4, msg=f"step {step}: observations")
        torch.testing.assert_close(rew_c, rew_e, rtol=0, atol=1e-4, msg=f"step {step}: rewards")
        resets += int(trunc_e.any())
    assert resets == 1


def test_compiled_env_whose_build_fails_warns_and_runs_eagerly(monkeypatch):
    """No C++ compiler (or an inductor error): a warning, then the eager rules, bit for bit."""
    def broken(fn, **kwargs):
        def fail(*args):
            raise RuntimeError("no C++ compiler")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    compiled, eager = (SoccerVecEnv(num_envs=8, team_size=2, compile=flag) for flag in (True, False))
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        obs = compiled.reset(seed=1)
    assert torch.equal(obs, eager.reset(seed=1))
    actions = torch.randint(0, 10, (8, 4), generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        assert torch.equal(compiled.step(actions)[0], eager.step(actions)[0])  # numpy's sqrt again: exact


def test_public_readers_of_the_matches():
    """`score`, `steps_in_match` and `player_positions` read what the engine holds ([B, 2],
    [B], [B, N, 2]: blue slots then red, the global frame) and hand out copies."""
    env = SoccerVecEnv(num_envs=3, device="cpu", team_size=2, max_cycles=6)
    env.reset(seed=4)
    steps, positions = env.steps_in_match(), env.player_positions()
    assert steps.tolist() == [0, 0, 0] and positions.shape == (3, 4, 2)
    assert (positions[:, :2, 0] < 0).all() and (positions[:, 2:, 0] > 0).all()  # blue kicks off in the -x half
    east = torch.full((3, 4), 1)  # action 1 moves east (+x in the player's own, mirrored frame)
    obs, _, _, _, infos = env.step(east)
    assert env.steps_in_match().tolist() == [1, 1, 1] and steps.tolist() == [0, 0, 0]
    moved = env.player_positions() - positions
    assert (moved[:, :2, 0] > 0).all() and (moved[:, 2:, 0] < 0).all()  # red's east is the global -x
    assert torch.equal(env.score(), infos["score"])
    state = env.engine.state
    assert torch.equal(env.player_positions(), torch.stack([state["x"].T, state["y"].T], -1))
    for _ in range(5):  # the matches end at max_cycles = 6 and kick off again
        env.step(east)
    assert env.steps_in_match().tolist() == [0, 0, 0]
