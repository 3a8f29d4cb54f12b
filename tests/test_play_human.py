"""`marl-grpo play`: a person steers one player with the keyboard. Keys are scripted (or posted as
pygame events to the dummy video driver); positions are read from the engine's world frame."""

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"  # before pygame is imported anywhere
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import numpy as np
import pytest
import torch

from marl_grpo.agents import SoccerPolicy, make_bot
from marl_grpo.agents.checkpoint import write_policy
from marl_grpo.cli import main
from marl_grpo.envs import ACTION_NAMES, KICK_ACTION, SoccerConfig
from marl_grpo.envs.render import SoccerRenderer
from marl_grpo.play import PLAY_COMMAND_KEYS, HumanMatch, PlayConfig, keys_to_action, run_play
from marl_grpo.run.checkpoint import atomic_directory


def make_checkpoint(folder, team_size: int = 2, arch: str = "mlp", max_cycles: int = 300) -> str:
    config = SoccerConfig(team_size=team_size, max_cycles=max_cycles)
    torch.manual_seed(0)
    policy = SoccerPolicy(config, hidden=8) if arch == "mlp" else SoccerPolicy(arch="entity", hidden=16)
    with atomic_directory(folder) as tmp:
        write_policy(tmp, policy, config, {})
    return str(folder)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    return make_checkpoint(tmp_path_factory.mktemp("play") / "checkpoint")


def key_event(kind: str, key_name: str):
    import pygame

    return pygame.event.Event(getattr(pygame, kind), key=pygame.key.key_code(key_name), mod=0, unicode="", scancode=0)


# ---------------------------------------------------------------------------------- key mapping
@pytest.mark.parametrize("keys, team, expected", [
    (set(), "blue", "stay"), ({"x"}, "blue", "stay"),
    ({"right"}, "blue", "E"), ({"d"}, "blue", "E"), ({"right", "d"}, "blue", "E"),
    ({"up", "right"}, "blue", "NE"), ({"w"}, "blue", "N"), ({"up", "a"}, "blue", "NW"),
    ({"left"}, "blue", "W"), ({"a", "s"}, "blue", "SW"), ({"down"}, "blue", "S"), ({"s", "d"}, "blue", "SE"),
    ({"left", "right"}, "blue", "stay"), ({"left", "right", "up"}, "blue", "N"),
    ({"space"}, "blue", "kick"), ({"space", "right"}, "blue", "kick"),
    # red's actions are read in its frame, the world turned by 180 degrees: right on screen is its W
    ({"right"}, "red", "W"), ({"up", "right"}, "red", "SW"), ({"w"}, "red", "S"), ({"down", "left"}, "red", "NE"),
    ({"space"}, "red", "kick"),
])
def test_keys_map_to_actions(keys, team, expected):
    assert ACTION_NAMES[keys_to_action(keys, team)] == expected


def test_space_out_of_reach_keeps_running_and_bad_team_fails():
    assert keys_to_action({"space", "right"}, "blue", ball_in_reach=False) == ACTION_NAMES.index("E")
    assert keys_to_action({"space"}, "red", ball_in_reach=False) == 0
    assert keys_to_action({"space"}, "red", ball_in_reach=True) == KICK_ACTION
    with pytest.raises(ValueError, match="team='green'"):
        keys_to_action({"right"}, "green")


# ---------------------------------------------------------------------------------- env effects
def position_after(ckpt: str, player: str, keys: set[str], steps: int = 10) -> np.ndarray:
    match = HumanMatch(PlayConfig(ckpt, player=player))
    for _ in range(steps):
        match.step(keys)
    return match.env.engine.frame(0)["player_pos"][match.index]


@pytest.mark.parametrize("player", ["blue_1", "red_0"])
def test_run_keys_move_the_player_that_way_on_screen(ckpt, player):
    still = position_after(ckpt, player, set())
    for keys, direction in (({"right"}, (1, 0)), ({"a"}, (-1, 0)), ({"up"}, (0, 1)), ({"s"}, (0, -1))):
        moved = position_after(ckpt, player, keys) - still
        along = float(moved @ np.array(direction))
        across = float(moved @ np.array(direction[::-1]))
        assert along > 0.2, (player, keys, moved)  # ~10 steps near the top speed of 0.045
        assert abs(across) < 0.05, (player, keys, moved)


def test_the_checkpoint_plays_the_teammates_and_the_bot_the_other_team(ckpt):
    match = HumanMatch(PlayConfig(ckpt, player="red_1", opponent="team", deterministic=True))
    assert (match.own, match.other, match.index) == (slice(2, 4), slice(0, 2), 3)
    sent = []
    env_step = match.env.step
    match.env.step = lambda actions: sent.append(actions.clone()) or env_step(actions)
    for _ in range(3):
        obs = match.env.engine.observe()
        mates = match.policy.act(obs[:, 2:], deterministic=True)[0]
        bot = make_bot("team", match.env.config).act(obs)[:, :2]
        action, _ = match.step({"left"})
        assert action == ACTION_NAMES.index("E")  # red's E is left on screen
        assert sent[-1].tolist() == [[*bot[0].tolist(), int(mates[0, 0]), action]]


def place(match: HumanMatch, player_xy, ball_xy) -> None:
    """Put the controlled player at `player_xy`, the ball at rest at `ball_xy` and the others far away."""
    state = match.env.engine.get_state()
    corners = [(-0.8, 0.5), (-0.8, -0.5), (0.8, 0.5), (0.8, -0.5)]
    for i in range(match.env.num_agents):
        x, y = player_xy if i == match.index else corners[i]
        state["x"][i, 0], state["y"][i, 0], state["vx"][i, 0], state["vy"][i, 0] = x, y, 0.0, 0.0
    state["ball_x"][0], state["ball_y"][0], state["ball_vx"][0], state["ball_vy"][0] = *ball_xy, 0.0, 0.0
    match.env.engine.set_state(state)


@pytest.mark.parametrize("player, side", [("blue_0", -1.0), ("red_1", 1.0)])
def test_space_kicks_the_ball_away_from_the_player(ckpt, player, side):
    config = SoccerConfig(team_size=2)
    gap = config.player_radius + config.ball_radius + 0.01  # within kick reach, not touching
    match = HumanMatch(PlayConfig(ckpt, player=player))
    place(match, (side * gap, 0.0), (0.0, 0.0))
    assert match.step(set())[0] == 0
    assert match.env.engine.frame(0)["ball_vel"].tolist() == [0.0, 0.0]  # no key: the ball stays put

    place(match, (side * gap, 0.0), (0.0, 0.0))
    assert match.step({"space"})[0] == KICK_ACTION
    frame = match.env.engine.frame(0)
    assert frame["kicking"][match.index]
    assert -side * frame["ball_vel"][0] > 0.8 * config.kick_power  # away from the player
    assert abs(frame["ball_vel"][1]) < 1e-6

    # far from the ball, space does not waste the step: the run key still runs
    place(match, (side * 0.5, 0.0), (0.0, 0.0))
    assert match.step({"space", "up"})[0] == keys_to_action({"up"}, match.team)
    assert match.env.engine.frame(0)["player_vel"][match.index][1] > 0


# ---------------------------------------------------------------------------------- picture
def test_marker_and_caption_are_drawn_only_when_asked(ckpt):
    match = HumanMatch(PlayConfig(ckpt, player="blue_1"))
    renderer = SoccerRenderer(match.env.config)
    plain = match.env.engine.frame(0)
    base = renderer.render(plain)
    np.testing.assert_array_equal(renderer.render({**plain, "highlight": None, "caption": None}), base)
    marked = renderer.render(match.frame())
    diff = np.abs(marked.astype(int) - base.astype(int)).sum(-1) > 30

    rows, cols = np.mgrid[: base.shape[0], : base.shape[1]]
    px, py = renderer.world_to_pixel(*plain["player_pos"][match.index])
    ring = np.abs(np.hypot(cols + 0.5 - px, rows + 0.5 - py) - 1.6 * renderer.player_px) < 2
    assert diff[ring].mean() > 0.5  # the ring around the player
    label = (np.abs(cols - px) < renderer.player_px) & (rows < py - 2 * renderer.player_px) \
        & (rows > py - 4 * renderer.player_px)
    assert diff[label].mean() > 0.3  # the "YOU" tag above it
    touchline = renderer.world_to_pixel(0.0, -match.env.config.resolved_half_width)[1]
    strip = rows > touchline + 3
    assert diff[rows >= base.shape[0] - 8].mean() > 0.3  # the help line along the bottom, below the touchline
    others = np.hypot(cols - px, rows - py) > 5 * renderer.player_px
    assert not diff[others & ~strip].any()  # nothing else changes

    with pytest.raises(ValueError, match="highlight"):
        renderer.render({**plain, "highlight": 4})
    with pytest.raises(ValueError, match="caption"):
        renderer.render({**plain, "caption": 3})


def test_title_and_help_line_name_the_player(ckpt):
    match = HumanMatch(PlayConfig(ckpt, player="red_1"))
    assert match.title == "marl-grpo play \u2014 you are red_1"
    assert match.caption().startswith("You are red_1 (red, attacking left)")
    for keys in ("arrows/WASD run", "space kick", "p pause", "r restart", "q/Esc quit"):
        assert keys in match.caption()
    assert match.caption(paused=True).startswith("PAUSED")


def test_play_renderer_keys(ckpt):
    import pygame

    renderer = SoccerRenderer(SoccerConfig(team_size=1), render_mode="human", fps=1000, command_keys=PLAY_COMMAND_KEYS)
    try:
        for kind, key in (("KEYDOWN", "right"), ("KEYDOWN", "space"), ("KEYDOWN", "p")):
            pygame.event.post(key_event(kind, key))
        assert renderer.poll_events() == ["pause"]  # space kicks here: it does not pause
        assert renderer.poll_keys() == {"right", "space", "p"}
        for kind, key in (("KEYUP", "space"), ("KEYUP", "p"), ("KEYDOWN", "a"), ("KEYUP", "a")):
            pygame.event.post(key_event(kind, key))
        assert renderer.poll_keys() == {"right", "a"}  # a tap between two frames counts once
        assert renderer.poll_keys() == {"right"}
    finally:
        renderer.close()
    with pytest.raises(ValueError, match="command_keys"):
        SoccerRenderer(SoccerConfig(team_size=1), command_keys={"x": "jump"})


# ---------------------------------------------------------------------------------- the loop
def test_scripted_session_steps_pauses_restarts_and_quits(ckpt):
    fast = PlayConfig(ckpt, fps=1000)
    result = run_play(fast, keys=[{"right"}] * 4)
    assert (result.frames, result.actions, result.frame["t"]) == (4, [1, 1, 1, 1], 4)

    result = run_play(fast, keys=[{"p"}, {"p"}, set(), {"p"}, {"right"}])  # held p toggles once
    assert (result.frames, result.actions, result.frame["t"]) == (5, [0, 1], 2)

    result = run_play(fast, keys=[{"up"}] * 5 + [{"r"}])
    assert (result.actions, result.frame["t"]) == ([3] * 5 + [0], 1)

    assert run_play(fast, keys=[set(), {"q"}, set()]).actions == [0]
    assert run_play(fast, keys=[{"escape"}]).frames == 0


def test_keyboard_events_drive_the_session(ckpt):
    import pygame

    pygame.display.init()
    pygame.event.post(key_event("KEYDOWN", "left"))
    result = run_play(PlayConfig(ckpt, player="red_0", fps=1000), max_steps=3)
    assert result.actions == [ACTION_NAMES.index("E")] * 3  # left on screen is red's E
    pygame.display.init()
    pygame.event.post(key_event("KEYDOWN", "q"))
    assert run_play(PlayConfig(ckpt, fps=1000), max_steps=3).frames == 0


def test_a_finished_match_records_the_score_and_the_next_kicks_off(tmp_path):
    short = make_checkpoint(tmp_path / "short", max_cycles=4)
    result = run_play(PlayConfig(short, fps=1000), keys=[set()] * 6)
    assert result.scores == [(0, 0)]
    assert result.frame["t"] == 2


# ---------------------------------------------------------------------------------- bad input
def test_bad_input_fails_clearly(ckpt, tmp_path):
    with pytest.raises(ValueError, match="player='green_0' is not in this 2v2 match: .*blue_0, blue_1, red_0, red_1"):
        HumanMatch(PlayConfig(ckpt, player="green_0"))
    with pytest.raises(ValueError, match="red_2"):
        HumanMatch(PlayConfig(ckpt, player="red_2"))
    with pytest.raises(ValueError, match="neither a bot"):
        HumanMatch(PlayConfig(ckpt, opponent="nobody"))
    with pytest.raises(ValueError, match="strength"):
        HumanMatch(PlayConfig(ckpt, strength=2.0))
    with pytest.raises(ValueError, match="fps"):
        HumanMatch(PlayConfig(ckpt, fps=0))
    three = make_checkpoint(tmp_path / "three", team_size=3)
    with pytest.raises(ValueError, match=f"opponent checkpoint '{three}' plays 3v3.*'{ckpt}' is 2v2"):
        HumanMatch(PlayConfig(ckpt, opponent=three))
    with pytest.raises(SystemExit, match="marl-grpo play: player='blue_7' .* blue_0, blue_1, red_0, red_1"):
        main(["play", ckpt, "--player", "blue_7"])
    with pytest.raises(SystemExit, match="marl-grpo play: no checkpoint"):
        main(["play", str(tmp_path / "missing")])


def test_an_entity_opponent_plays_any_team_size(ckpt, tmp_path):
    entity = make_checkpoint(tmp_path / "entity", team_size=3, arch="entity")
    match = HumanMatch(PlayConfig(ckpt, player="red_0", opponent=entity))
    before = match.env.engine.frame(0)["player_pos"][:2].copy()
    for _ in range(5):
        match.step(set())
    assert match.env.engine.frame(0)["t"] == 5
    assert not np.array_equal(match.env.engine.frame(0)["player_pos"][:2], before)  # blue, the entity policy, moved
