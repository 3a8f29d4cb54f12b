"""The one-match rules as generated scalar code (`envs/scalar.py`): bit for bit the array code."""

import numpy as np
import pytest

from marl_grpo.envs import SoccerConfig
from marl_grpo.envs.soccer import SoccerEngine
from marl_grpo.envs.scalar import _Tracer


def random_state(engine: SoccerEngine, rng: np.random.Generator) -> dict:
    """A state anywhere on (and a little beyond) the pitch: contacts, kicks in reach, wall bounces,
    goals, and exact ties (players on one spot, everything at rest) in some draws."""
    s, N, f = engine.get_state(), engine.num_agents, np.float32
    L, W = engine.half_length, engine.half_width
    s["x"] = rng.uniform(-L, L, (N, 1)).astype(f)
    s["y"] = rng.uniform(-W, W, (N, 1)).astype(f)
    s["vx"], s["vy"] = (rng.normal(0, 0.05, (N, 1)).astype(f) for _ in range(2))
    s["ball_x"] = rng.uniform(-1.02 * L, 1.02 * L, (1,)).astype(f)
    s["ball_y"] = (rng.uniform(-W, W, (1,)) * (0.3 if rng.random() < 0.5 else 1.0)).astype(f)
    s["ball_vx"], s["ball_vy"] = (rng.normal(0, 0.2, (1,)).astype(f) for _ in range(2))
    if rng.random() < 0.4:  # a player at the ball
        j = rng.integers(N)
        s["x"][j] = s["ball_x"] + f(rng.normal(0, 0.03))
        s["y"][j] = s["ball_y"] + f(rng.normal(0, 0.03))
    if rng.random() < 0.2:  # ties and signed zeros
        for key in ("vx", "vy", "ball_vx", "ball_vy"):
            s[key][:] = 0.0
        s["x"][0], s["y"][0] = s["x"][1], s["y"][1]
    s["last_touch"] = np.array([rng.integers(-1, N)])
    return s


def array_engine(config: SoccerConfig) -> SoccerEngine:
    """The same one-match engine running the array code (what the vector env runs, B = 1)."""
    engine = SoccerEngine(config, 1, backend="numpy")
    engine._physics_fn, engine._observe_fn = engine._physics, engine._observe
    return engine


def assert_bitwise_equal(a: SoccerEngine, b: SoccerEngine, where: str) -> None:
    for key, va in a.state.items():
        vb = b.state[key]
        if va.dtype == np.float32:
            va, vb = va.view(np.uint32), vb.view(np.uint32)  # -0.0 and 0.0 differ here
        assert np.array_equal(va, vb), f"{where}: state[{key!r}] differs: {a.state[key]} vs {b.state[key]}"
    assert np.array_equal(a.kicking.view(np.uint32), b.kicking.view(np.uint32)), f"{where}: kicking differs"
    assert np.array_equal(a.observe().view(np.uint32), b.observe().view(np.uint32)), f"{where}: observations differ"


@pytest.mark.parametrize("kwargs", [dict(team_size=1), dict(team_size=2), dict(blue_size=2, red_size=3),
                                    dict(team_size=4, player_radius=0.05, kick_power=0.09, reward_dist_to_ball=0.0)])
def test_scalar_rules_equal_the_array_rules_bit_for_bit(kwargs):
    config = SoccerConfig.from_kwargs(**kwargs)
    scalar = SoccerEngine(config, 1, backend="numpy")
    array = array_engine(config)
    assert hasattr(scalar._physics_fn, "source") and hasattr(scalar._observe_fn, "source"), \
        "one match of <= 8 players should run the generated code"
    rng = np.random.default_rng(0)
    goals = touches = 0
    for trial in range(400):
        state = random_state(scalar, rng)
        scalar.set_state(state)
        array.set_state(state)
        for step in range(3):
            actions = rng.integers(0, 10, (1, scalar.num_agents))
            out_s, out_a = scalar.step(actions), array.step(actions)
            assert_bitwise_equal(scalar, array, f"trial {trial} step {step}")
            assert np.array_equal(out_s[0].view(np.uint32), out_a[0].view(np.uint32))
            for name in out_s[1]:
                assert np.array_equal(out_s[1][name].view(np.uint32), out_a[1][name].view(np.uint32)), name
                assert out_s[1][name].shape == out_a[1][name].shape == (1, scalar.num_agents)
            assert out_s[2] == out_a[2] and out_s[3] == out_a[3]
            touches += int(out_a[1]["ball_touch"].any())
        goals += int(scalar.state["score"].sum() - state["score"].sum())
    assert goals > 10 and touches > 30, (goals, touches)  # the draws reach the goal and contact code


def test_whole_matches_through_the_pettingzoo_env_equal_the_array_rules():
    """Full matches (kickoffs after goals, truncation) of the env against array-code replays."""
    from marl_grpo.envs import soccer_v0

    env = soccer_v0.parallel_env(team_size=2, max_cycles=200)
    array = array_engine(env.config)
    rng = np.random.default_rng(1)
    for match in range(3):
        env.reset(seed=match)
        array.reset(match)
        while env.agents:
            actions = rng.integers(0, 10, (1, 4))
            env.step(dict(zip(env.agents, actions[0].tolist())))
            array.step(actions)
            assert_bitwise_equal(env.engine, array, f"match {match}")


def test_scalar_code_only_for_small_matches():
    assert not hasattr(SoccerEngine(SoccerConfig(team_size=5), 1, backend="numpy")._physics_fn, "source")
    assert not hasattr(SoccerEngine(SoccerConfig(team_size=2), 2, backend="numpy")._physics_fn, "source")


def test_generated_code_follows_the_config():
    """Each config gets its own code (its constants are folded in), and equal configs share it."""
    engines = [SoccerEngine(SoccerConfig.from_kwargs(team_size=1, kick_power=power), 1, backend="numpy")
               for power in (0.1, 0.2, 0.1)]
    assert engines[0]._physics_fn is engines[2]._physics_fn is not engines[1]._physics_fn
    for engine in engines[:2]:  # blue kicks the ball in reach
        state = engine.get_state()
        state["x"][0], state["y"][0], state["ball_x"][:], state["ball_y"][:] = -0.1, 0.0, -0.05, 0.0
        engine.set_state(state)
        engine.step(np.array([[9, 0]]))
    assert engines[1].state["ball_vx"][0] > engines[0].state["ball_vx"][0] > 0


def test_tracing_rejects_data_dependent_branches_and_mixed_kinds():
    tracer = _Tracer()
    x = tracer.inputs("x", (2,), "f")
    with pytest.raises(TypeError, match="data-dependent"):
        bool(x[0] > x[1])
    i = tracer.inputs("i", (1,), "i")
    with pytest.raises(TypeError, match="float64"):
        i[0] * 0.5
    assert (x[0] * 1.0) is x[0] and (x[0] * -1.0).op == "neg"  # exact simplifications only
    assert (tracer.const(2.0, "f") * 3.0).value == np.float32(6.0)  # constants fold
    with pytest.raises(TypeError, match="float64"):
        x[0] * np.float64(0.5)  # a numpy float64 scalar is not weak: numpy would widen the result
