"""Renderer, video writer and assets. Frames are built by hand, independent of the engine."""

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"  # before pygame is imported anywhere
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import importlib.resources
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

from marl_grpo.envs.config import SoccerConfig
from marl_grpo.envs.record import VideoRecorder, save_video
from marl_grpo.envs.render import SoccerRenderer


def make_frame(config: SoccerConfig, score=(0, 0), t=0, kicking=None, ball=(0.3, -0.2)) -> dict:
    """Blue players on the left half, red on the right, spread out so that no two discs touch."""
    hl, hw = config.resolved_half_length, config.resolved_half_width
    pos = []
    for team, count in ((-1, config.n_blue), (1, config.n_red)):
        for slot in range(count):
            row, col = slot % 4, slot // 4
            pos.append((team * hl * (0.2 + 0.22 * col), hw * (-0.75 + 0.5 * row)))
    n = config.num_agents
    return {
        "player_pos": np.array(pos, dtype=np.float32),
        "player_vel": np.zeros((n, 2), dtype=np.float32),
        "ball_pos": np.array(ball, dtype=np.float32),
        "ball_vel": np.zeros(2, dtype=np.float32),
        "score": np.array(score, dtype=np.int64),
        "t": t,
        "kicking": np.zeros(n, dtype=bool) if kicking is None else np.asarray(kicking, dtype=bool),
    }


def disc_pixels(image: np.ndarray, renderer: SoccerRenderer, xy, radius_px: float) -> np.ndarray:
    """Pixels [K, 3] (as int) within `radius_px` of world point `xy`."""
    cx, cy = renderer.world_to_pixel(float(xy[0]), float(xy[1]))
    rows, cols = np.mgrid[: image.shape[0], : image.shape[1]]
    inside = (cols + 0.5 - cx) ** 2 + (rows + 0.5 - cy) ** 2 <= radius_px**2
    assert inside.sum() > 0
    return image[inside].astype(int)


CONFIGS = {
    "1v1": SoccerConfig(team_size=1),
    "3v3": SoccerConfig(team_size=3),
    "11v11": SoccerConfig(team_size=11, max_cycles=3000),
    "2v4": SoccerConfig(blue_size=2, red_size=4),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def setup(request):
    config = CONFIGS[request.param]
    renderer = SoccerRenderer(config)
    yield config, renderer
    renderer.close()


# ---------------------------------------------------------------------------------- picture
def test_rgb_array_shape_and_dtype(setup):
    config, renderer = setup
    image = renderer.render(make_frame(config))
    assert isinstance(image, np.ndarray)
    assert image.dtype == np.uint8
    assert image.shape == (renderer.height, renderer.width, 3) == (renderer.height, 720, 3)
    assert image.flags["C_CONTIGUOUS"]
    # Aspect ratio follows the pitch (plus the score bar); even height suits video encoders.
    pitch_height = renderer.height - renderer.hud_height
    assert renderer.height % 2 == 0
    aspect = config.resolved_half_width / config.resolved_half_length
    assert pitch_height / renderer.width == pytest.approx(aspect, rel=0.15)


def test_pitch_fits_the_picture(setup):
    config, renderer = setup
    hl, hw = config.resolved_half_length, config.resolved_half_width
    for x, y in ((-hl, -hw), (hl, hw), (-hl, hw), (hl, -hw)):
        px, py = renderer.world_to_pixel(x, y)
        assert 0 < px < renderer.width and renderer.hud_height < py < renderer.height
    # Goals (beyond the goal lines) are inside the picture too, and y points up.
    assert renderer.world_to_pixel(-hl * 1.07, 0)[0] > 0
    assert renderer.world_to_pixel(hl * 1.07, 0)[0] < renderer.width
    assert renderer.world_to_pixel(0, 1)[1] < renderer.world_to_pixel(0, 0)[1]


def test_players_are_drawn_in_team_colours(setup):
    config, renderer = setup
    frame = make_frame(config)
    image = renderer.render(frame)
    for index, pos in enumerate(frame["player_pos"]):
        mean = disc_pixels(image, renderer, pos, 0.6 * renderer.player_px).mean(axis=0)
        r, g, b = mean
        if index < config.n_blue:
            assert b > r + 60 and b > g + 30, f"blue player {index} is {mean}"
        else:
            assert r > g + 60 and r > b + 60, f"red player {index} is {mean}"


def test_ball_is_bright_and_grass_is_green(setup):
    config, renderer = setup
    frame = make_frame(config)
    image = renderer.render(frame)
    ball = disc_pixels(image, renderer, frame["ball_pos"], 0.7 * renderer.ball_px)
    assert ball.max(axis=1).max() > 215, "no white patch on the ball"
    grass_point = (-0.5 * config.resolved_half_length, 0.1 * config.resolved_half_width)  # empty: no player, no line
    grass = disc_pixels(image, renderer, grass_point, 4).mean(axis=0)
    assert grass[1] > grass[0] + 40 and grass[1] > grass[2] + 40, f"grass is {grass}"
    assert ball.min(axis=1).mean() > grass.min() + 50, "ball is not brighter than the grass"


def test_moving_the_ball_moves_the_bright_spot(setup):
    config, renderer = setup
    spot = (-0.5 * config.resolved_half_length, 0.1 * config.resolved_half_width)
    before = renderer.render(make_frame(config))
    after = renderer.render(make_frame(config, ball=spot))
    assert disc_pixels(after, renderer, spot, 0.7 * renderer.ball_px).max() > 215
    assert disc_pixels(before, renderer, spot, 0.7 * renderer.ball_px).max() < 200


def test_hud_shows_score_and_clock(setup):
    config, renderer = setup
    hud = slice(0, renderer.hud_height)
    base = renderer.render(make_frame(config, score=(0, 0), t=0))
    scored = renderer.render(make_frame(config, score=(2, 1), t=0))
    later = renderer.render(make_frame(config, score=(0, 0), t=config.max_cycles // 2))
    again = renderer.render(make_frame(config, score=(0, 0), t=0))
    assert (base[hud] != scored[hud]).any(axis=-1).sum() > 20
    assert (base[hud] != later[hud]).any(axis=-1).sum() > 20
    # The pitch is unaffected by the score, and rendering keeps no state between frames.
    np.testing.assert_array_equal(base[renderer.hud_height :], scored[renderer.hud_height :])
    np.testing.assert_array_equal(base, again)


def test_kick_flash_marks_the_kicker(setup):
    config, renderer = setup
    kicking = np.zeros(config.num_agents, dtype=bool)
    kicking[0] = True
    plain = renderer.render(make_frame(config))
    flash = renderer.render(make_frame(config, kicking=kicking))
    diff = (plain != flash).any(axis=-1)
    assert diff.sum() > 30
    rows, cols = np.nonzero(diff)
    px, py = renderer.world_to_pixel(*make_frame(config)["player_pos"][0])
    # Everything that changed is around player 0.
    assert np.hypot(cols - px, rows - py).max() < 3 * renderer.player_px


def test_width_argument_and_hud_clock_format():
    config = SoccerConfig(team_size=2, max_cycles=1300)
    renderer = SoccerRenderer(config, width=400)
    image = renderer.render(make_frame(config, t=100))
    assert image.shape[1] == 400
    # 1200 steps left at 20 steps/s is 60 s: the clock reads 01:00; rendered text is white.
    hud = image[: renderer.hud_height]
    assert (hud.min(axis=-1) > 230).sum() > 20


def test_bad_frames_and_arguments_fail_clearly():
    config = SoccerConfig(team_size=2)
    renderer = SoccerRenderer(config)
    frame = make_frame(config)
    frame["player_pos"] = frame["player_pos"][:3]
    with pytest.raises(ValueError, match=r"expected \(4, 2\)"):
        renderer.render(frame)
    with pytest.raises(KeyError, match="ball_pos"):
        renderer.render({"player_pos": np.zeros((4, 2))})
    with pytest.raises(ValueError, match="render_mode"):
        SoccerRenderer(config, render_mode="ascii")
    with pytest.raises(ValueError, match="width"):
        SoccerRenderer(config, width=10)


def test_optional_frame_keys_default():
    config = SoccerConfig(team_size=1)
    renderer = SoccerRenderer(config)
    frame = make_frame(config)
    minimal = {"player_pos": frame["player_pos"], "ball_pos": frame["ball_pos"]}
    np.testing.assert_array_equal(renderer.render(minimal), renderer.render(frame))


def test_rgb_array_opens_no_window():
    import pygame

    renderer = SoccerRenderer(SoccerConfig(team_size=1))
    renderer.render(make_frame(renderer.config))
    assert pygame.display.get_surface() is None
    assert renderer.poll_events() == []


def test_human_mode_draws_to_a_window_and_maps_keys():
    import pygame

    renderer = SoccerRenderer(SoccerConfig(team_size=2), render_mode="human", fps=1000)
    try:
        assert renderer.render(make_frame(renderer.config)) is None
        assert pygame.display.get_surface().get_size() == (renderer.width, renderer.height)
        for key in (pygame.K_SPACE, pygame.K_r, pygame.K_ESCAPE, pygame.K_a):
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))
        pygame.event.post(pygame.event.Event(pygame.QUIT))
        assert renderer.poll_events() == ["pause", "restart", "quit", "quit"]
        assert renderer.poll_events() == []
        # Events that arrive while render() pumps the queue are kept for the next poll.
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_p, mod=0, unicode="p", scancode=0))
        renderer.render(make_frame(renderer.config))
        assert renderer.poll_events() == ["pause"]
    finally:
        renderer.close()
    assert pygame.display.get_surface() is None
    renderer.close()  # idempotent


def test_importing_the_renderer_does_not_import_pygame():
    code = "import sys, marl_grpo.envs.render, marl_grpo.envs.record; assert 'pygame' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------- assets
@pytest.mark.parametrize("name", ["grass.png", "ball.png", "CREDITS.md"])
def test_assets_are_packaged_and_small(name):
    resource = importlib.resources.files("marl_grpo.assets").joinpath(name)
    assert resource.is_file()
    assert len(resource.read_bytes()) < 100_000


def test_ball_sprite_has_alpha():
    ball = iio.imread(importlib.resources.files("marl_grpo.assets").joinpath("ball.png").read_bytes())
    assert ball.shape == (64, 64, 4)
    assert ball[0, 0, 3] == 0 and ball[32, 32, 3] == 255


# ---------------------------------------------------------------------------------- video
def match_frames(count: int = 12) -> list:
    config = SoccerConfig(team_size=2, max_cycles=200)
    renderer = SoccerRenderer(config, width=240)
    frames = []
    for t in range(count):
        frame = make_frame(config, t=t * 10, ball=(-0.8 + 0.12 * t, 0.1))  # every frame differs
        frames.append(renderer.render(frame))
    return frames


def test_save_gif_round_trips(tmp_path):
    frames = match_frames(12)
    path = save_video(frames, tmp_path / "sub" / "match.gif", fps=20)
    assert path.is_file()
    read = iio.imread(path, index=None)
    assert read.shape[0] == 12 and read.shape[1:3] == frames[0].shape[:2]
    meta = iio.immeta(path)
    assert meta["loop"] == 0 and meta["duration"] == 50
    # The shared palette keeps colours close to the originals.
    error = np.abs(read[..., :3].astype(int) - np.stack(frames).astype(int))
    assert error.mean() < 6


def test_save_mp4(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import imageio.v2 as imageio

    frames = [f[:-1] for f in match_frames(8)]  # odd height: padded to even by save_video
    path = save_video(frames, tmp_path / "match.mp4", fps=10)
    reader = imageio.get_reader(path)
    try:
        assert reader.count_frames() == 8
        assert reader.get_meta_data()["fps"] == pytest.approx(10)
    finally:
        reader.close()


def test_save_mp4_without_ffmpeg_says_how_to_fix(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "imageio_ffmpeg" else real_find_spec(name, *a))
    with pytest.raises(ImportError, match="pip install imageio-ffmpeg"):
        save_video(match_frames(2), tmp_path / "match.mp4")


def test_save_video_rejects_bad_input(tmp_path):
    frames = match_frames(2)
    with pytest.raises(ValueError, match=r"\.gif.*\.mp4"):
        save_video(frames, tmp_path / "match.avi")
    with pytest.raises(ValueError, match="no frames"):
        save_video([], tmp_path / "match.gif")
    with pytest.raises(ValueError, match="uint8"):
        save_video([f.astype(np.float32) for f in frames], tmp_path / "match.gif")
    with pytest.raises(ValueError, match="shape"):
        save_video([frames[0], frames[1][:-2]], tmp_path / "match.gif")
    assert not list(tmp_path.iterdir())


def test_video_recorder(tmp_path):
    with pytest.raises(ValueError, match="extension"):
        VideoRecorder(tmp_path / "match.webm")
    frames = match_frames(5)
    with VideoRecorder(tmp_path / "match.gif", fps=10) as recorder:
        for frame in frames:
            recorder.append(frame)
        assert len(recorder) == 5
    assert iio.imread(tmp_path / "match.gif", index=None).shape[0] == 5
    with pytest.raises(RuntimeError, match="closed"):
        recorder.append(frames[0])
    empty = VideoRecorder(tmp_path / "empty.gif")
    assert empty.close() is None and not (tmp_path / "empty.gif").exists()
