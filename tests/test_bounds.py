"""Finite observation and state bounds (`SoccerConfig.observation_bounds` / `state_bounds`): they hold
on many sampled states (goals, kicks, collisions, kickoffs, terminal observations), they are tight
where the geometry makes them so, PettingZoo's API tests do not warn about them, and SuperSuit's
`normalize_obs_v0` accepts the env."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # before pygame is imported anywhere
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo.test import api_test, parallel_api_test

from marl_grpo.envs.bots import make_bot
from marl_grpo.envs import SoccerConfig, SoccerVecEnv, soccer_v0

from helpers import scripted_action

# PettingZoo's api_test warnings about observation-space bounds all contain one of these
BOUND_WARNINGS = ("observation space value", "infinity")


# ----------------------------------------------------------------------------- sampling
def sample(device: str, num_envs: int, steps: int, bots=(("chaser", 0.7), ("team", 0.7)), seed: int = 0, **kwargs):
    """Play `num_envs` matches for `steps` steps, blue and red driven by weakened scripted bots (so
    a share of the actions is random), and gather every observation (the kickoffs and the terminal
    `final_obs` included) and every state: their per-feature min / max, and whether goals, kicks
    and collisions happened."""
    env = SoccerVecEnv(num_envs=num_envs, device=device, **kwargs)
    c = env.config
    lay = c.obs_layout()
    blue, red = (make_bot(name, c, strength=s, seed=seed + k) for k, (name, s) in enumerate(bots))
    obs = env.reset(seed=seed)
    state = env.state()
    stats = dict(omin=obs.amin((0, 1)), omax=obs.amax((0, 1)), smin=state.amin(0), smax=state.amax(0), kicks=0)
    nb = c.n_blue
    for _ in range(steps):
        actions = torch.cat([blue.act(obs)[:, :nb], red.act(obs)[:, nb:]], 1)
        obs, _, _, _, infos = env.step(actions)
        state = env.state()
        for o in (obs, infos["final_obs"]):
            stats["omin"] = torch.minimum(stats["omin"], o.amin((0, 1)))
            stats["omax"] = torch.maximum(stats["omax"], o.amax((0, 1)))
        stats["smin"] = torch.minimum(stats["smin"], state.amin(0))
        stats["smax"] = torch.maximum(stats["smax"], state.amax(0))
        stats["kicks"] += int(env.engine.kicking.sum())
    out = {k: (v.cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in stats.items()}
    # a goal shows in the score block of some (terminal or running) observation
    out["goals_seen"] = float(out["omax"][lay["score"]].max()) > 0
    return c, out


def features(config: SoccerConfig, values: np.ndarray) -> dict[str, np.ndarray]:
    """Split a per-feature vector [obs_dim] into blocks; entity blocks come back as [K, 5]."""
    lay = config.obs_layout()
    out = {name: values[lay[name]] for name, _ in config.observation_features()}
    for name in ("teammates", "opponents"):
        out[name] = out[name].reshape(-1, 5)
    return out


CONFIGS = {
    # id: (kwargs, num_envs, steps, bots, geometric tightness checked: needs long varied matches)
    "2v2": (dict(team_size=2), 512, 300, (("chaser", 0.7), ("team", 0.7)), True),
    "3v3": (dict(team_size=3), 192, 200, (("team", 0.6), ("chaser", 0.8)), True),
    "1v3": (dict(blue_size=1, red_size=3), 192, 200, (("chaser", 0.8), ("random", 1.0)), True),
    "11v11": (dict(team_size=11), 16, 150, (("team", 0.7), ("chaser", 0.7)), False),
    "goals_to_win": (dict(team_size=2, goals_to_win=2), 256, 150, (("chaser", 0.9), ("random", 1.0)), False),
    "short": (dict(team_size=2, max_cycles=40), 256, 100, (("chaser", 0.7), ("chaser", 0.7)), False),
    "hard_physics": (dict(team_size=2, kick_power=0.2, restitution=1.0, wall_restitution=1.0, ball_mass=2.0),
                     256, 200, (("chaser", 0.6), ("chaser", 0.6)), True),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def sampled(request, device):
    kwargs, num_envs, steps, bots, tight = CONFIGS[request.param]
    config, stats = sample(device, num_envs, steps, bots=bots, **kwargs)
    stats.update(steps=steps, tight=tight)
    return request.param, config, stats


# ----------------------------------------------------------------------------- the bounds hold
def test_bounds_hold_on_sampled_states(sampled):
    name, c, s = sampled
    low, high = c.observation_bounds()
    slow, shigh = c.state_bounds()
    assert low.shape == high.shape == (c.obs_dim,) and slow.shape == shigh.shape == (c.state_dim,)
    assert low.dtype == high.dtype == slow.dtype == shigh.dtype == np.float32
    for lo, hi in ((low, high), (slow, shigh)):
        assert np.isfinite(lo).all() and np.isfinite(hi).all() and (lo < hi).all()
    assert s["goals_seen"], f"{name}: no goal in the sample"
    assert s["kicks"] > 0, f"{name}: no kick in the sample"
    bad = np.nonzero((s["omin"] < low) | (s["omax"] > high))[0]
    names = [n for n, w in c.observation_features() for _ in range(w)]
    assert bad.size == 0, f"{name}: observation features out of bounds: " + ", ".join(
        f"{names[i]}[{i}] sampled [{s['omin'][i]}, {s['omax'][i]}] bounds [{low[i]}, {high[i]}]" for i in bad)
    bad = np.nonzero((s["smin"] < slow) | (s["smax"] > shigh))[0]
    assert bad.size == 0, f"{name}: state features out of bounds: " + ", ".join(
        f"[{i}] sampled [{s['smin'][i]}, {s['smax'][i]}] bounds [{slow[i]}, {shigh[i]}]" for i in bad)


def test_bounds_are_tight(sampled):
    """Loosely: the geometric bounds are reached or nearly so, and the provable velocity and score
    bounds are within a fixed factor of what is played (a bound of 1e9 fails all of these)."""
    name, c, s = sampled
    low, high = c.observation_bounds()
    amax = np.maximum(-s["omin"], s["omax"])  # largest magnitude sampled per feature
    f, h = features(c, amax), features(c, high)

    def near(block: str, cols, frac: float) -> None:
        got, bound = f[block][..., cols].max(), h[block][..., cols].max()
        assert got >= frac * bound, f"{name}: {block}[{cols}] reaches {got:.3f}, bound {bound:.3f}"

    if s["tight"]:
        near("self_pos", 0, 0.99)  # players run into the end walls
        near("self_pos", 1, 0.99)  # ... and the side walls
        near("opp_goal_rel", 0, 0.99)
        near("own_goal_rel", 1, 0.99)
        near("ball_rel", 0, 0.8)
        near("ball_rel", 1, 0.8)
        near("teammates", 0, 0.5)  # two players at opposite walls: rarer
        near("opponents", 1, 0.45)
    near("ball_vel", [0, 1], 0.95)  # the ball reaches its top speed
    # player velocities: the top speed is reached, and contacts go beyond it; the provable bound
    # (every contact at once, see `bound_magnitudes`) grows with the number of players N but
    # stays within 3 (N + 1) times what is played
    vel = max(f["self_vel"].max(), f["teammates"][:, 2:4].max(initial=0), f["opponents"][:, 2:4].max())
    assert vel > 1.05, f"{name}: no collision pushed a player beyond its top speed"
    assert h["self_vel"].max() <= 3 * (c.num_agents + 1) * vel
    assert f["time_left"][0] == 1.0
    if s["steps"] >= c.max_cycles:  # the terminal observations of truncated matches
        assert s["omin"][c.obs_layout()["time_left"]][0] == 0.0
    for block in ("ball_in_reach", "slot", "team"):
        assert f[block].max() == 1.0 and s["omin"][c.obs_layout()[block]].min() == 0.0
    assert (features(c, s["omax"])["teammates" if c.max_team > 1 else "opponents"][:, 4] == 1.0).all()
    if c.n_blue != c.n_red:  # missing slots read as zeros with present flag 0
        assert features(c, s["omin"])["opponents"][:, 4].min() == 0.0
    score_bound = h["score"].max()
    if c.goals_to_win:
        assert f["score"].max() == pytest.approx(0.2 * c.goals_to_win)  # the terminal observation
        assert score_bound == pytest.approx(0.2 * c.goals_to_win, rel=1e-4)
    else:
        assert score_bound <= 0.2 * c.max_cycles + 1e-3
    # the state: players at the walls, the ball at its top speed and into a goal mouth
    N = c.num_agents
    smag = np.maximum(-s["smin"], s["smax"])
    _, shigh = c.state_bounds()
    assert smag[4 * N + 2] >= 0.95 * shigh[4 * N + 2]
    if s["tight"]:
        assert smag[:N].max() >= 0.99 * shigh[:N].max() and smag[N:2 * N].max() >= 0.99 * shigh[N:2 * N].max()
        assert smag[4 * N] >= 0.95 * shigh[4 * N] and smag[4 * N + 1] >= 0.95 * shigh[4 * N + 1]


# ----------------------------------------------------------------------------- the bounds themselves
def test_bounds_finite_and_ordered_for_many_configs():
    rng = np.random.default_rng(0)
    for _ in range(200):
        kw = dict(blue_size=int(rng.integers(1, 12)), red_size=int(rng.integers(1, 12)),
                  max_cycles=int(rng.integers(1, 2000)), goals_to_win=int(rng.integers(0, 4)),
                  half_length=float(rng.choice([None, rng.uniform(0.05, 5.0)]) or 0) or None,
                  kick_power=float(rng.uniform(0.01, 1.0)), ball_max_speed=float(rng.uniform(0.01, 1.0)),
                  player_max_speed=float(rng.uniform(0.005, 0.5)), restitution=float(rng.uniform(0, 1)),
                  ball_mass=float(rng.uniform(0.05, 5.0)), kickoff_jitter=float(rng.uniform(0, 0.5)))
        try:
            c = SoccerConfig(**kw)
        except ValueError:  # e.g. a goal as wide as the pitch
            continue
        for lo, hi in (c.observation_bounds(), c.state_bounds()):
            assert np.isfinite(lo).all() and np.isfinite(hi).all() and (lo < hi).all(), kw


def test_time_left_exact_in_float32():
    """time_left = 1 - t * (1 / max_cycles) in float32 lies in [0, 1] for every t <= max_cycles, as the
    engine computes it on both backends (so its bounds need no pad)."""
    mc = np.arange(1, 200_001)
    for t in (mc, mc - 1):
        v = 1.0 - t.astype(np.float32) * (1.0 / mc).astype(np.float32)
        assert v.dtype == np.float32 and v.min() >= 0.0 and v.max() <= 1.0
    for m in (1, 3, 7, 300, 999, 12345):
        t = torch.arange(m + 1, dtype=torch.int64)
        v = 1.0 - t.float() * (1.0 / m)
        assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0


def test_config_bounds_import_without_torch():
    """config.py (and so the bounds) needs numpy only."""
    import marl_grpo.envs.config as config_module

    code = ("import sys, importlib.util; sys.modules['torch'] = None; "
            f"spec = importlib.util.spec_from_file_location('cfg', {config_module.__file__!r}); "
            "m = sys.modules['cfg'] = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "lo, hi = m.SoccerConfig(team_size=3).observation_bounds(); print(lo.shape[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == SoccerConfig(team_size=3).obs_dim


# ----------------------------------------------------------------------------- the envs' spaces
def test_spaces_use_the_bounds():
    c = SoccerConfig(blue_size=2, red_size=3)
    low, high = c.observation_bounds()
    slow, shigh = c.state_bounds()
    env = soccer_v0.parallel_env(blue_size=2, red_size=3)
    for agent in env.possible_agents:
        assert np.array_equal(env.observation_space(agent).low, low)
        assert np.array_equal(env.observation_space(agent).high, high)
    assert np.array_equal(env.state_space.low, slow) and np.array_equal(env.state_space.high, shigh)
    vec = SoccerVecEnv(num_envs=3, device="cpu", blue_size=2, red_size=3)
    assert np.array_equal(vec.single_observation_space.low, low)
    assert vec.observation_space.shape == (3, 5, c.obs_dim)
    assert np.array_equal(vec.observation_space.low, np.broadcast_to(low, (3, 5, c.obs_dim)))
    assert np.array_equal(vec.observation_space.high, np.broadcast_to(high, (3, 5, c.obs_dim)))
    assert np.array_equal(vec.single_state_space.high, shigh) and vec.state_space.shape == (3, c.state_dim)
    assert vec.observation_space.contains(vec.reset(seed=0).numpy())
    assert vec.state_space.contains(vec.state().numpy())


def test_pettingzoo_env_stays_in_its_spaces():
    env = soccer_v0.parallel_env(team_size=2, max_cycles=150, goals_to_win=3)
    rng = np.random.default_rng(0)
    lay = env.config.obs_layout()
    for seed in range(2):
        obs, _ = env.reset(seed=seed)
        while env.agents:
            for agent, o in obs.items():
                assert env.observation_space(agent).contains(o), agent
            assert env.state_space.contains(env.state())
            actions = {a: scripted_action(obs[a], lay) if rng.random() < 0.7 else int(rng.integers(0, 10))
                       for a in env.agents}
            obs, *_ = env.step(actions)
        for agent, o in obs.items():  # the terminal observations
            assert env.observation_space(agent).contains(o), agent


def _bound_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if any(key in str(w.message) for key in BOUND_WARNINGS)]


def test_pettingzoo_api_tests_do_not_warn_about_bounds():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        api_test(soccer_v0.env(team_size=2, max_cycles=60), num_cycles=100)
        api_test(soccer_v0.env(blue_size=3, red_size=1, max_cycles=60), num_cycles=100)
        parallel_api_test(soccer_v0.parallel_env(team_size=2, max_cycles=60), num_cycles=100)
    assert _bound_warnings(caught) == []

    # the check is live: infinite bounds do warn
    aec = soccer_v0.env(team_size=2, max_cycles=60)
    par = aec.unwrapped
    par._observation_spaces = {a: spaces.Box(-np.inf, np.inf, (par.config.obs_dim,), np.float32)
                               for a in par.possible_agents}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        api_test(aec, num_cycles=10)
    assert len(_bound_warnings(caught)) >= 2


# ----------------------------------------------------------------------------- SuperSuit
@pytest.mark.parametrize("kwargs", [dict(team_size=2), dict(blue_size=1, red_size=3, goals_to_win=2)])
def test_supersuit_normalize_obs(kwargs):
    import supersuit as ss  # in the test extra
    env = ss.normalize_obs_v0(soccer_v0.parallel_env(max_cycles=200, **kwargs))
    rng = np.random.default_rng(0)
    for agent in env.possible_agents:
        space = env.observation_space(agent)
        assert (space.low == 0.0).all() and (space.high == 1.0).all()
    obs, _ = env.reset(seed=0)
    lay = env.unwrapped.config.obs_layout()
    raw = env.unwrapped
    seen = 0
    while env.agents:
        for agent, o in obs.items():
            assert o.min() >= 0.0 and o.max() <= 1.0, agent
            seen += 1
        # the scripted striker reads raw observations
        raw_obs = raw.engine.observe()[0]
        actions = {a: scripted_action(raw_obs[raw.possible_agents.index(a)], lay) if rng.random() < 0.7 else int(rng.integers(0, 10))
                   for a in env.agents}
        obs, *_ = env.step(actions)
    for o in obs.values():
        assert o.min() >= 0.0 and o.max() <= 1.0
    assert seen > 100
    # the AEC form too
    aec = ss.normalize_obs_v0(soccer_v0.env(max_cycles=20, **kwargs))
    aec.reset(seed=1)
    for agent in aec.agent_iter():
        o, _, term, trunc, _ = aec.last()
        assert o.min() >= 0.0 and o.max() <= 1.0
        aec.step(None if term or trunc else int(rng.integers(0, 10)))
