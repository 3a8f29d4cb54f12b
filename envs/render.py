"""Pygame renderer: draws one frame of a match as a broadcast-style top-down picture.

A *frame* is a plain dict of numpy values (what ``engine.frame(index)`` returns):

    =============  ===================  ==========================================================
    key            shape / type         meaning
    =============  ===================  ==========================================================
    player_pos     float [N, 2]         world positions, the ``n_blue`` blue players first
    ball_pos       float [2]            world position of the ball
    score          int [2]              goals (blue, red); optional, default 0-0
    t              int                  steps elapsed; optional, default 0
    kicking        bool [N]             players whose kick connected this step; optional
    player_vel     float [N, 2]         optional, unused by the picture
    ball_vel       float [2]            optional; a fast ball leaves a short motion streak
    highlight      int or None          optional; index of a player to mark with a ring and a
                                        "YOU" label (the one a person controls); default none
    caption        str or None          optional; one line of text in a strip along the bottom
                                        (e.g. which player you are and the keys); default none
    =============  ===================  ==========================================================

Without ``highlight`` and ``caption`` the picture is exactly that of a frame without them.

World coordinates run x in [-half_length, half_length] (blue attacks +x) and y in
[-half_width, half_width] with y up. Everything on screen is scaled from the `SoccerConfig`,
so a 1v1 and an 11v11 pitch both fill the picture.

pygame is imported lazily in `SoccerRenderer.__init__`, so importing ``marl_grpo.envs`` needs no
display. ``render_mode="rgb_array"`` draws on an off-screen Surface and never opens a window (it
also runs with ``SDL_VIDEODRIVER=dummy``); ``"human"`` draws to a window at ``fps`` frames a second.
"""

from __future__ import annotations

import importlib.resources
import io
import math
from typing import Any, Callable, Mapping

import numpy as np

from .config import SoccerConfig

RENDER_MODES = ("human", "rgb_array")
STEPS_PER_SECOND = 20
"""Simulation steps per second of match time, for the clock (20 steps = 1 s)."""
DEFAULT_WIDTH = 720

BLUE = (38, 104, 228)
BLUE_DARK = (14, 44, 120)
BLUE_TEXT = (110, 170, 255)
RED = (222, 40, 46)
RED_DARK = (110, 14, 18)
RED_TEXT = (255, 105, 100)
LINE_WHITE = (244, 246, 240)
KICK_FLASH = (255, 236, 110)
HUD_TOP = (28, 33, 44)
HUD_BOTTOM = (12, 14, 20)

# Margins around the touchlines, in half lengths (the goals sit in the x margin).
GOAL_DEPTH = 0.075
MARGIN_X = GOAL_DEPTH + 0.05
MARGIN_Y = 0.06
# Smallest on-screen radii, so that 11v11 on a 720 px picture stays legible.
MIN_PLAYER_PX = 8.5
MIN_BALL_PX = 5.5
SUPERSAMPLE = 2  # the static background is drawn at this scale and smoothed down

EVENT_COMMANDS = ("quit", "pause", "restart")
"""What `SoccerRenderer.poll_events` can return."""
DEFAULT_COMMAND_KEYS = {"escape": "quit", "q": "quit", "space": "pause", "p": "pause", "r": "restart"}
"""Key (pygame key name) -> command, as `poll_events` reports them unless told otherwise."""
YOU_RING = (255, 255, 255)
CAPTION_TEXT = (236, 240, 248)


def _asset_bytes(name: str) -> bytes:
    """Raw bytes of a packaged asset; works for editable and wheel installs."""
    return importlib.resources.files("marl_grpo.assets").joinpath(name).read_bytes()


class SoccerRenderer:
    """Draws frames of a match with pygame.

    Args:
        config: the match's `SoccerConfig`; sets the pitch geometry and the team sizes.
        render_mode: ``"rgb_array"`` (``render`` returns ``uint8 [H, W, 3]``) or ``"human"``
            (``render`` draws to a window, keeps ``fps`` and returns None).
        width: picture width in pixels (default 720); the height follows the pitch aspect ratio
            plus the score bar.
        fps: frames per second of the human window.
        title: window caption for ``"human"``.
        command_keys: key (pygame key name, e.g. ``"space"``) -> command; default
            `DEFAULT_COMMAND_KEYS`.

    Interactive viewers call `poll_events` between frames to get ``"quit"`` (window close, Esc,
    q), ``"pause"`` (space, p) and ``"restart"`` (r), and `poll_keys` for the keys held down
    (a person steering a player).
    """

    def __init__(
        self,
        config: SoccerConfig,
        render_mode: str = "rgb_array",
        width: int | None = None,
        fps: int = 20,
        title: str = "marl-grpo soccer",
        command_keys: Mapping[str, str] | None = None,
    ) -> None:
        if render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode={render_mode!r} is invalid: expected one of {RENDER_MODES}")
        width = DEFAULT_WIDTH if width is None else width
        if not isinstance(width, int) or isinstance(width, bool) or width < 160:
            raise ValueError(f"width={width!r} is invalid: expected an int >= 160 (pixels)")
        if not fps > 0:
            raise ValueError(f"fps={fps!r} is invalid: expected a value > 0")
        command_keys = dict(DEFAULT_COMMAND_KEYS if command_keys is None else command_keys)
        bad = {k: v for k, v in command_keys.items() if v not in EVENT_COMMANDS}
        if bad:
            raise ValueError(f"command_keys={bad!r} is invalid: each command must be one of {EVENT_COMMANDS}")

        import pygame  # lazy: importing the env package must not need a display

        self._pg = pygame
        self.config = config
        self.render_mode = render_mode
        self.fps = fps
        self.title = title
        self.command_keys = command_keys

        hl, hw = config.resolved_half_length, config.resolved_half_width
        self.width = width
        self.scale = width / (2 * hl * (1 + MARGIN_X))
        """pixels per world unit"""
        self.hud_height = max(30, round(width * 0.068))
        field_height = 2 * (hw + MARGIN_Y * hl) * self.scale
        self.height = self.hud_height + math.ceil(field_height)
        self.height += self.height % 2  # even sizes suit video encoders (H.264 in yuv420p)
        self.player_px = max(config.player_radius * self.scale, MIN_PLAYER_PX)
        self.ball_px = max(config.ball_radius * self.scale, MIN_BALL_PX)

        pygame.font.init()
        self._canvas = pygame.Surface((self.width, self.height))
        self._window = None
        self._clock = None
        self._pending: list[str] = []
        self._held: set[str] = set()  # keys down now (pygame key names)
        self._tapped: set[str] = set()  # keys pressed since the last poll_keys
        if render_mode == "human":
            try:
                pygame.display.init()
                self._window = pygame.display.set_mode((self.width, self.height))
            except pygame.error as err:
                raise RuntimeError(
                    f"render_mode='human' needs a display ({err}); use render_mode='rgb_array' "
                    "and save_video() to watch a match on a headless machine"
                ) from err
            pygame.display.set_caption(title)
            self._clock = pygame.time.Clock()

        self._grass = pygame.image.load(io.BytesIO(_asset_bytes("grass.png")), "grass.png")
        self._ball_sprite = self._load_ball_sprite()
        self._fonts: dict[int, Any] = {}
        self._background = self._draw_background()
        self._goal_overlay = self._draw_goal_overlay()
        self._player_sprites: dict[tuple[int, int], Any] = {}
        self._shadow = self._disc_shadow(self.player_px)
        self._ball_shadow = self._disc_shadow(self.ball_px)
        self._kick_ring = self._draw_kick_ring()
        self._hud_cache: tuple[tuple, Any] | None = None
        self._you_ring: Any = None  # drawn on first use: only `marl-grpo play` marks a player
        self._caption_cache: tuple[str, Any] | None = None

    # ------------------------------------------------------------------ public API
    def world_to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """Picture coordinates (column, row) of world point (x, y); y up becomes row up."""
        cx = self.width / 2
        cy = self.hud_height + (self.height - self.hud_height) / 2
        return cx + x * self.scale, cy - y * self.scale

    def render(self, frame: Mapping[str, Any]) -> np.ndarray | None:
        """Draw `frame`. Returns uint8 [H, W, 3] for ``"rgb_array"``, None for ``"human"``."""
        self._draw(self._check_frame(frame))
        if self.render_mode == "rgb_array":
            # surfarray is [W, H, 3]; the picture convention is [H, W, 3].
            return np.ascontiguousarray(self._pg.surfarray.array3d(self._canvas).transpose(1, 0, 2))
        self._window.blit(self._canvas, (0, 0))
        self._pg.display.flip()
        self._collect_events()
        self._clock.tick(self.fps)
        return None

    def poll_events(self) -> list[str]:
        """Commands from the window since the last call: ``"quit"``, ``"pause"``, ``"restart"``.

        Always empty for ``"rgb_array"``. `render` also drains the queue (so the window stays
        responsive) and keeps what it saw for this call.
        """
        if self._window is not None:
            self._collect_events()
        events, self._pending = self._pending, []
        return events

    def poll_keys(self) -> set[str]:
        """Keys (pygame key names: ``"left"``, ``"a"``, ``"space"``, ...) held down now, plus those
        pressed since the last call, so that a tap shorter than a frame still counts once.

        Always empty for ``"rgb_array"``.
        """
        if self._window is not None:
            self._collect_events()
        keys, self._tapped = self._held | self._tapped, set()
        return keys

    def close(self) -> None:
        """Close the window (if any). Safe to call twice."""
        if self._window is not None:
            self._pg.display.quit()
            self._window = None

    def __enter__(self) -> "SoccerRenderer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ frame checks
    def _check_frame(self, frame: Mapping[str, Any]) -> dict[str, Any]:
        n = self.config.num_agents
        missing = [k for k in ("player_pos", "ball_pos") if k not in frame]
        if missing:
            raise KeyError(f"frame is missing {missing}; got keys {sorted(frame)}")
        player_pos = np.asarray(frame["player_pos"], dtype=np.float64)
        if player_pos.shape != (n, 2):
            raise ValueError(
                f"frame['player_pos'] has shape {player_pos.shape}, expected ({n}, 2) for "
                f"{self.config.n_blue} blue + {self.config.n_red} red players"
            )
        ball_pos = np.asarray(frame["ball_pos"], dtype=np.float64).reshape(-1)
        if ball_pos.shape != (2,):
            raise ValueError(f"frame['ball_pos'] has shape {ball_pos.shape}, expected (2,)")
        ball_vel = np.asarray(frame.get("ball_vel", (0.0, 0.0)), dtype=np.float64).reshape(-1)
        score = np.asarray(frame.get("score", (0, 0))).reshape(-1)
        if score.shape != (2,):
            raise ValueError(f"frame['score'] has shape {score.shape}, expected (2,) = (blue, red)")
        kicking = np.asarray(frame.get("kicking", np.zeros(n, dtype=bool)), dtype=bool).reshape(-1)
        if kicking.shape != (n,):
            raise ValueError(f"frame['kicking'] has shape {kicking.shape}, expected ({n},)")
        return {
            "player_pos": player_pos,
            "ball_pos": ball_pos,
            "ball_vel": ball_vel if ball_vel.shape == (2,) else np.zeros(2),
            "score": (int(score[0]), int(score[1])),
            "t": int(frame.get("t", 0)),
            "kicking": kicking,
            "highlight": self._check_highlight(frame.get("highlight")),
            "caption": self._check_caption(frame.get("caption")),
        }

    def _check_highlight(self, highlight: Any) -> int | None:
        if highlight is None:
            return None
        n = self.config.num_agents
        if isinstance(highlight, (bool, np.bool_)) or not isinstance(highlight, (int, np.integer)) \
                or not 0 <= highlight < n:
            raise ValueError(f"frame['highlight']={highlight!r} is invalid: expected None or a player index "
                             f"in [0, {n})")
        return int(highlight)

    @staticmethod
    def _check_caption(caption: Any) -> str | None:
        if caption is not None and not isinstance(caption, str):
            raise ValueError(f"frame['caption'] must be a str or None, got {type(caption).__name__}")
        return caption or None

    # ------------------------------------------------------------------ per-frame drawing
    def _draw(self, frame: dict[str, Any]) -> None:
        canvas = self._canvas
        canvas.blit(self._background, (0, 0))
        n_blue = self.config.n_blue

        # Shadows first, so no shadow falls on top of a neighbour.
        for pos in frame["player_pos"]:
            self._blit_centered(self._shadow, pos, offset=0.35 * self.player_px)
        self._blit_centered(self._ball_shadow, frame["ball_pos"], offset=0.45 * self.ball_px)

        for index, pos in enumerate(frame["player_pos"]):
            team, slot = (0, index) if index < n_blue else (1, index - n_blue)
            if frame["kicking"][index]:
                self._blit_centered(self._kick_ring, pos)
            if index == frame["highlight"]:
                self._blit_centered(self._highlight_ring(), pos)
            self._blit_centered(self._player_sprite(team, slot), pos)

        self._draw_ball(frame["ball_pos"], frame["ball_vel"])
        canvas.blit(self._goal_overlay, (0, 0))
        if frame["highlight"] is not None:
            self._draw_you_label(frame["player_pos"][frame["highlight"]])
        canvas.blit(self._hud(frame["score"], frame["t"]), (0, 0))
        if frame["caption"] is not None:
            strip = self._caption_strip(frame["caption"])
            canvas.blit(strip, (0, self.height - strip.get_height()))

    def _blit_centered(self, sprite: Any, world_pos: np.ndarray, offset: float = 0.0) -> None:
        px, py = self.world_to_pixel(float(world_pos[0]), float(world_pos[1]))
        w, h = sprite.get_size()
        self._canvas.blit(sprite, (round(px - w / 2 + offset), round(py - h / 2 + offset)))

    def _draw_ball(self, pos: np.ndarray, vel: np.ndarray) -> None:
        pg = self._pg
        speed_px = float(np.hypot(*vel)) * self.scale
        if speed_px > 1.5:
            # Motion streak: fading dots back along the velocity, about two steps of travel.
            steps = 5
            for i in range(steps, 0, -1):
                back = pos - vel * (2.0 * i / steps)
                px, py = self.world_to_pixel(float(back[0]), float(back[1]))
                radius = self.ball_px * (1 - 0.12 * i)
                streak = pg.Surface((math.ceil(2 * radius) + 2,) * 2, pg.SRCALPHA)
                pg.draw.circle(streak, (255, 255, 255, int(70 * (1 - i / (steps + 1)))),
                               (streak.get_width() / 2, streak.get_height() / 2), radius)
                w, h = streak.get_size()
                self._canvas.blit(streak, (round(px - w / 2), round(py - h / 2)))
        # Spin the sprite with the distance from the centre spot: reads as rolling.
        angle = math.degrees((float(pos[0]) + float(pos[1])) / self.config.ball_radius) * 0.25
        sprite = pg.transform.rotate(self._ball_sprite, angle % 360)
        self._blit_centered(sprite, pos)

    # ------------------------------------------------------------------ cached art
    def _font(self, size: int) -> Any:
        if size not in self._fonts:
            self._fonts[size] = self._pg.font.Font(None, size)  # pygame's bundled freesansbold
        return self._fonts[size]

    def _load_ball_sprite(self) -> Any:
        pg = self._pg
        image = pg.image.load(io.BytesIO(_asset_bytes("ball.png")), "ball.png")
        size = max(4, round(2 * self.ball_px))
        return pg.transform.smoothscale(image, (size, size))

    def _supersampled(self, size: int, draw: Callable[[Any, float, int], None]) -> Any:
        """A `size` x `size` sprite drawn at 4x by `draw(surface, centre, scale)`, then smoothly
        scaled down (antialiased edges)."""
        ss = 4
        big = self._pg.Surface((size * ss, size * ss), self._pg.SRCALPHA)
        draw(big, size * ss / 2, ss)
        return self._pg.transform.smoothscale(big, (size, size))

    def _disc_shadow(self, radius: float) -> Any:
        def draw(big: Any, c: float, ss: int) -> None:
            self._pg.draw.ellipse(big, (0, 0, 0, 80), big.get_rect().inflate(-2 * ss, -2 * ss))

        return self._supersampled(math.ceil(2 * radius * 1.15) + 2, draw)

    def _draw_kick_ring(self) -> Any:
        r = self.player_px * 1.75

        def draw(big: Any, c: float, ss: int) -> None:
            self._pg.draw.circle(big, (*KICK_FLASH, 70), (c, c), r * ss)
            ring_width = max(2, round(0.22 * self.player_px * ss))
            self._pg.draw.circle(big, (*KICK_FLASH, 235), (c, c), r * ss, width=ring_width)

        return self._supersampled(math.ceil(2 * r) + 4, draw)

    def _highlight_ring(self) -> Any:
        """A white ring with a dark edge (legible on grass and on the white lines) around a player."""
        if self._you_ring is None:
            r = self.player_px * 1.6

            def draw(big: Any, c: float, ss: int) -> None:
                width = max(2, round(0.3 * self.player_px * ss))
                self._pg.draw.circle(big, (255, 255, 255, 60), (c, c), r * ss)
                self._pg.draw.circle(big, (0, 0, 0, 170), (c, c), r * ss + ss, width=width + 2 * ss)
                self._pg.draw.circle(big, (*YOU_RING, 255), (c, c), r * ss, width=width)

            self._you_ring = self._supersampled(math.ceil(2 * r) + 4, draw)
        return self._you_ring

    def _draw_you_label(self, pos: np.ndarray) -> None:
        """A "YOU" tag above the marked player (below it when it stands at the top touchline)."""
        pg = self._pg
        font = self._font(max(13, round(self.player_px * 1.7)))
        text = font.render("YOU", True, (20, 22, 28))
        box = text.get_rect().inflate(round(self.player_px * 0.8), round(self.player_px * 0.2))
        px, py = self.world_to_pixel(float(pos[0]), float(pos[1]))
        gap = self.player_px * 1.75 + box.height / 2
        cy = py - gap if py - gap - box.height / 2 >= self.hud_height + 2 else py + gap
        box.center = (round(min(max(px, box.width / 2 + 2), self.width - box.width / 2 - 2)), round(cy))
        pg.draw.rect(self._canvas, (255, 255, 255), box, border_radius=round(box.height * 0.35))
        pg.draw.rect(self._canvas, (20, 22, 28), box, width=1, border_radius=round(box.height * 0.35))
        self._canvas.blit(text, text.get_rect(center=(box.centerx, box.centery + 1)))

    def _caption_strip(self, caption: str) -> Any:
        """A translucent strip along the bottom edge holding one line of text, shrunk to fit.
        It fills the run-off below the touchline (the line stays visible) where there is room."""
        if self._caption_cache is not None and self._caption_cache[0] == caption:
            return self._caption_cache[1]
        pg = self._pg
        line = max(2, round(0.009 * self.config.resolved_half_length * self.scale))
        below = self.height - (self.world_to_pixel(0.0, -self.config.resolved_half_width)[1] + line)
        h = max(16, math.floor(below) - 1)
        size = round(h * 0.9)
        text = self._font(size).render(caption, True, CAPTION_TEXT)
        while text.get_width() > self.width - 16 and size > 9:
            size -= 1
            text = self._font(size).render(caption, True, CAPTION_TEXT)
        strip = pg.Surface((self.width, h), pg.SRCALPHA)
        strip.fill((10, 12, 18, 175))
        strip.blit(text, text.get_rect(center=(self.width / 2, h / 2 + 1)))
        self._caption_cache = (caption, strip)
        return strip

    def _player_sprite(self, team: int, slot: int) -> Any:
        key = (team, slot)
        if key in self._player_sprites:
            return self._player_sprites[key]
        pg = self._pg
        ss = 4
        r = self.player_px
        size = math.ceil(2 * r) + 2
        big = pg.Surface((size * ss, size * ss), pg.SRCALPHA)
        c = size * ss / 2
        fill, dark = (BLUE, BLUE_DARK) if team == 0 else (RED, RED_DARK)
        outline = max(1.3, 0.16 * r) * ss
        pg.draw.circle(big, dark, (c, c), r * ss)
        # Light from the top left: a few concentric, shifted discs make a soft highlight.
        inner = r * ss - outline
        for k in range(6):
            t = k / 5
            shade = tuple(min(255, round(ch + (255 - ch) * 0.22 * t)) for ch in fill)
            radius = inner * (1 - 0.55 * t)
            shift = (inner - radius) * 0.55
            pg.draw.circle(big, shade, (c - shift, c - shift), radius)
        # The slot number, as in the agent name (blue_0 wears 0).
        text = str(slot)
        font = self._font(max(8, round(r * (1.7 if len(text) == 1 else 1.4) * ss)))
        label = font.render(text, True, (255, 255, 255))
        big.blit(label, label.get_rect(center=(c, c + 0.08 * r * ss)))
        sprite = pg.transform.smoothscale(big, (size, size))
        self._player_sprites[key] = sprite
        return sprite

    def _draw_background(self) -> Any:
        """Grass stripes, run-off, pitch markings and goal floors, drawn once and smoothed."""
        pg = self._pg
        ss = SUPERSAMPLE
        cfg = self.config
        hl, hw, gw = cfg.resolved_half_length, cfg.resolved_half_width, cfg.resolved_goal_half_width
        surf = pg.Surface((self.width * ss, self.height * ss))
        s = self.scale * ss

        def px(x: float, y: float) -> tuple[float, float]:
            a, b = self.world_to_pixel(x, y)
            return a * ss, b * ss

        # Mowing stripes: an even number across the pitch length, so the halfway line falls on a
        # stripe edge, continued over the run-off.
        left, top = px(-hl, hw)
        right, bottom = px(hl, -hw)
        pitch_px = right - left
        n_stripes = max(8, 2 * round(pitch_px / (2 * 48 * ss)))
        stripe = pitch_px / n_stripes
        tile_w, tile_h = self._grass.get_size()
        halves = [self._grass.subsurface((0, 0, tile_w // 2, tile_h)),
                  self._grass.subsurface((tile_w // 2, 0, tile_w // 2, tile_h))]
        first = -math.ceil(left / stripe)
        last = math.ceil((surf.get_width() - left) / stripe)
        tex_h = max(2, round(stripe * tile_h / (tile_w // 2)))
        for i in range(first, last):
            x0, x1 = round(left + i * stripe), round(left + (i + 1) * stripe)
            piece = pg.transform.smoothscale(halves[i % 2], (max(1, x1 - x0), tex_h))
            for y in range(0, surf.get_height(), tex_h):
                surf.blit(piece, (x0, y))

        # Run-off area a little darker than the field of play.
        shade = pg.Surface(surf.get_size(), pg.SRCALPHA)
        shade.fill((0, 20, 0, 48))
        shade.fill((0, 0, 0, 0), pg.Rect(round(left), round(top), round(pitch_px), round(bottom - top)))
        surf.blit(shade, (0, 0))

        # Goal floors: the net's shadow on the grass behind each goal line.
        depth = GOAL_DEPTH * hl
        for side in (-1, 1):
            gx0, gy0 = px(min(side * hl, side * (hl + depth)), gw)
            gx1, gy1 = px(max(side * hl, side * (hl + depth)), -gw)
            floor = pg.Surface((round(gx1 - gx0), round(gy1 - gy0)), pg.SRCALPHA)
            floor.fill((0, 0, 0, 60))
            surf.blit(floor, (round(gx0), round(gy0)))

        # Pitch markings, sized from real proportions but tied to the goal width, which is
        # much wider here (relative to the pitch) than in the laws of the game.
        lw = max(2 * ss, round(0.009 * hl * s))
        white = LINE_WHITE

        def line(a: tuple[float, float], b: tuple[float, float]) -> None:
            pg.draw.line(surf, white, px(*a), px(*b), lw)

        def rect(x0: float, y0: float, x1: float, y1: float) -> None:
            (ax, ay), (bx, by) = px(x0, y0), px(x1, y1)
            r = pg.Rect(round(min(ax, bx)), round(min(ay, by)), round(abs(bx - ax)), round(abs(by - ay)))
            pg.draw.rect(surf, white, r.inflate(lw, lw), lw)

        def circle(x: float, y: float, radius: float, width: int | None = None) -> None:
            pg.draw.circle(surf, white, px(x, y), radius * s, lw if width is None else width)

        def arc(x: float, y: float, radius: float, start: float, stop: float) -> None:
            cx, cy = px(x, y)
            r = radius * s
            # Polyline arcs: pygame's draw.arc leaves gaps at thick widths.
            angles = np.linspace(start, stop, 48)
            points = [(cx + r * math.cos(a), cy - r * math.sin(a)) for a in angles]
            pg.draw.lines(surf, white, False, points, lw)
            for p in (points[0], points[-1]):
                pg.draw.circle(surf, white, p, lw / 2)

        rect(-hl, hw, hl, -hw)
        line((0, hw), (0, -hw))
        centre_r = min(0.174 * hl, 0.3 * hw)
        circle(0, 0, centre_r)
        spot = max(0.011 * hl, 1.6 * lw / s)
        circle(0, 0, spot, width=0)

        box_hw = min(2.6 * gw, 0.82 * hw)
        box_depth = min(0.8 * box_hw, 0.45 * hl)
        small_hw = min(1.5 * gw, 0.6 * box_hw + 0.4 * gw)
        small_depth = 0.35 * box_depth
        spot_x = hl - 0.66 * box_depth
        for side in (-1, 1):
            rect(side * hl, box_hw, side * (hl - box_depth), -box_hw)
            rect(side * hl, small_hw, side * (hl - small_depth), -small_hw)
            circle(side * spot_x, 0, spot, width=0)
            # Penalty arc: the part of the spot's circle outside the box.
            d = box_depth - (hl - spot_x)  # spot to box edge
            if d < centre_r:
                half = math.acos(d / centre_r)
                mid = math.pi if side > 0 else 0.0
                arc(side * spot_x, 0, centre_r, mid - half, mid + half)
        corner_r = max(0.03 * hl, 3 * lw / s)
        for sx, sy in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
            start = {(1, 1): math.pi, (-1, 1): 1.5 * math.pi, (-1, -1): 0.0, (1, -1): 0.5 * math.pi}[(sx, sy)]
            arc(sx * hl, sy * hw, corner_r, start, start + 0.5 * math.pi)

        return pg.transform.smoothscale(surf, (self.width, self.height))

    def _draw_goal_overlay(self) -> Any:
        """Nets (drawn above the ball, which can roll in under them), posts and crossbars."""
        pg = self._pg
        ss = SUPERSAMPLE
        cfg = self.config
        hl, gw = cfg.resolved_half_length, cfg.resolved_goal_half_width
        depth = GOAL_DEPTH * hl
        surf = pg.Surface((self.width * ss, self.height * ss), pg.SRCALPHA)
        s = self.scale * ss

        def px(x: float, y: float) -> tuple[float, float]:
            a, b = self.world_to_pixel(x, y)
            return a * ss, b * ss

        net = (235, 240, 240, 150)
        frame_w = max(2 * ss, round(0.012 * hl * s))
        mesh = max(5 * ss, round(0.022 * hl * s))
        post_r = max(2.2 * ss, 0.012 * hl * s)
        for side in (-1, 1):
            x_line, x_back = side * hl, side * (hl + depth)
            (ax, ay), (bx, by) = px(x_line, gw), px(x_back, -gw)
            x0, x1, y0, y1 = min(ax, bx), max(ax, bx), ay, by
            # Net mesh: a grid inside the goal, plus the frame of the net at the back and sides.
            x = x0
            while x <= x1:
                pg.draw.line(surf, net, (x, y0), (x, y1), ss)
                x += mesh
            y = y0
            while y <= y1:
                pg.draw.line(surf, net, (x0, y), (x1, y), ss)
                y += mesh
            back = x0 if side < 0 else x1
            pg.draw.line(surf, (225, 230, 230, 220), (back, y0), (back, y1), frame_w)
            pg.draw.line(surf, (225, 230, 230, 220), (x0, y0), (x1, y0), frame_w)
            pg.draw.line(surf, (225, 230, 230, 220), (x0, y1), (x1, y1), frame_w)
            # Crossbar along the goal line and the two posts.
            lx = ax
            pg.draw.line(surf, (255, 255, 255, 255), (lx, y0), (lx, y1), frame_w + ss)
            for y in (y0, y1):
                pg.draw.circle(surf, (60, 60, 60, 255), (lx, y), post_r + ss)
                pg.draw.circle(surf, (255, 255, 255, 255), (lx, y), post_r)
        return pg.transform.smoothscale(surf, (self.width, self.height))

    def _hud(self, score: tuple[int, int], t: int) -> Any:
        """The score bar: team names, score, match clock and a time-elapsed strip."""
        max_cycles = self.config.max_cycles
        steps_left = max(0, max_cycles - t)
        seconds = math.ceil(steps_left / STEPS_PER_SECOND)
        key = (score, seconds, min(t, max_cycles) * 200 // max_cycles, t >= max_cycles)
        if self._hud_cache is not None and self._hud_cache[0] == key:
            return self._hud_cache[1]
        pg = self._pg
        w, h = self.width, self.hud_height
        hud = pg.Surface((w, h))
        for row in range(h):
            k = row / max(1, h - 1)
            hud.fill(tuple(round(a + (b - a) * k) for a, b in zip(HUD_TOP, HUD_BOTTOM)), (0, row, w, 1))

        big = self._font(round(h * 0.72))
        mid = self._font(round(h * 0.54))
        small = self._font(round(h * 0.40))
        cy = h / 2 - 1

        # Score box in the middle, team names either side with a colour badge.
        score_text = big.render(f"{score[0]}  -  {score[1]}", True, (250, 250, 250))
        box = score_text.get_rect(center=(w / 2, cy)).inflate(round(h * 0.5), round(h * 0.12))
        pg.draw.rect(hud, (44, 50, 64), box, border_radius=round(h * 0.14))
        pg.draw.rect(hud, (80, 88, 108), box, width=1, border_radius=round(h * 0.14))
        hud.blit(score_text, score_text.get_rect(center=(w / 2, cy + 1)))
        gap = round(h * 0.35)
        badge = round(h * 0.3)
        blue = mid.render("BLUE", True, BLUE_TEXT)
        blue_rect = blue.get_rect(midright=(box.left - gap, cy + 1))
        hud.blit(blue, blue_rect)
        pg.draw.rect(hud, BLUE, (blue_rect.left - gap - badge, cy - badge / 2, badge, badge), border_radius=3)
        red = mid.render("RED", True, RED_TEXT)
        red_rect = red.get_rect(midleft=(box.right + gap, cy + 1))
        hud.blit(red, red_rect)
        pg.draw.rect(hud, RED, (red_rect.right + gap, cy - badge / 2, badge, badge), border_radius=3)

        # Clock (time remaining) on the right, the line-up or FULL TIME on the left.
        clock = big.render(f"{seconds // 60:02d}:{seconds % 60:02d}", True, (255, 255, 255))
        clock_rect = clock.get_rect(midright=(w - round(h * 0.45), cy + 1))
        clock_box = clock_rect.inflate(round(h * 0.4), round(h * 0.12))
        pg.draw.rect(hud, (44, 50, 64), clock_box, border_radius=round(h * 0.14))
        hud.blit(clock, clock_rect)
        if t >= max_cycles:
            label = small.render("FULL TIME", True, (255, 214, 90))
        else:
            label = small.render(f"{self.config.n_blue} v {self.config.n_red}", True, (170, 178, 196))
        hud.blit(label, label.get_rect(midleft=(round(h * 0.45), cy + 1)))

        # Elapsed-time strip along the bottom edge.
        strip = max(2, round(h * 0.06))
        pg.draw.rect(hud, (40, 44, 56), (0, h - strip, w, strip))
        pg.draw.rect(hud, (255, 214, 90), (0, h - strip, round(w * min(t, max_cycles) / max_cycles), strip))
        self._hud_cache = (key, hud)
        return hud

    # ------------------------------------------------------------------ events
    def _collect_events(self) -> None:
        pg = self._pg
        for event in pg.event.get():
            if event.type == pg.QUIT:
                self._pending.append("quit")
            elif event.type == pg.KEYDOWN:
                name = pg.key.name(event.key)
                self._held.add(name)
                self._tapped.add(name)
                if name in self.command_keys:
                    self._pending.append(self.command_keys[name])
            elif event.type == pg.KEYUP:
                self._held.discard(pg.key.name(event.key))
            elif event.type == getattr(pg, "WINDOWFOCUSLOST", None):
                self._held.clear()  # the key-up events go to another window
        del self._pending[:-64]  # bounded if nobody polls


__all__ = ["DEFAULT_COMMAND_KEYS", "EVENT_COMMANDS", "RENDER_MODES", "STEPS_PER_SECOND", "SoccerRenderer"]
