"""Configuration of a soccer match: team sizes, pitch geometry, physics and reward weights.

All lengths are in pitch units (the pitch runs from ``-half_length`` to ``+half_length`` along x
and ``-half_width`` to ``+half_width`` along y); all speeds are in pitch units per step. Blue
attacks towards ``+x``, red towards ``-x``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_TEAM_SIZE = 11

# The action table. Directions are in the agent's own (mirrored) frame, where it always attacks +x.
#   index  name         effect
#   0      stay         no acceleration (drag still slows the player)
#   1..8   move E..SE   accelerate in one of 8 compass directions, counter-clockwise from +x
#   9      kick         no acceleration; if the ball is within reach it is kicked away from the
#                       player along the player->ball line with speed `kick_power` (Haxball-style:
#                       aim by standing behind the ball)
ACTION_NAMES = ("stay", "E", "NE", "N", "NW", "W", "SW", "S", "SE", "kick")
NUM_ACTIONS = len(ACTION_NAMES)
KICK_ACTION = 9

REWARD_COMPONENTS = ("goal", "ball_touch", "ball_progress", "shot_on_target", "dist_to_ball")

# The PettingZoo env's per-agent infos, the same flat numeric keys at reset and at every step: each
# weighted reward component (they sum to the reward; 0.0 at reset) and the running score from the
# agent's side (goals for its team, goals against it).
INFO_KEYS = tuple(f"reward_{name}" for name in REWARD_COMPONENTS) + ("score_for", "score_against")


@dataclass
class SoccerConfig:
    """Everything that defines a match. Unknown keyword arguments raise (see `from_kwargs`)."""

    team_size: int = 2
    """players per team for a symmetric match (overridden per team by `blue_size` / `red_size`)"""
    blue_size: int | None = None
    """players in the blue team (defaults to `team_size`)"""
    red_size: int | None = None
    """players in the red team (defaults to `team_size`)"""
    max_cycles: int = 300
    """steps per match; reaching it is a truncation"""
    goals_to_win: int = 0
    """if > 0, the match terminates as soon as a team has scored this many goals"""

    half_length: float | None = None
    """half the pitch length; None scales it with the team size (1.0 up to 3 a side)"""
    half_width: float | None = None
    """half the pitch width; None = 0.62 * half_length"""
    goal_half_width: float | None = None
    """half the width of each goal mouth; None = 0.16 * half_length"""

    player_radius: float = 0.035
    """radius of a player disc"""
    ball_radius: float = 0.022
    """radius of the ball"""
    player_accel: float = 0.009
    """velocity added per step by a move action"""
    player_drag: float = 0.15
    """fraction of player velocity lost per step"""
    player_max_speed: float = 0.045
    """top player speed (per step)"""
    ball_friction: float = 0.025
    """fraction of ball velocity lost per step"""
    ball_max_speed: float = 0.14
    """top ball speed (per step)"""
    ball_mass: float = 0.4
    """ball mass relative to a player (1.0); sets how far a running player pushes it"""
    kick_power: float = 0.11
    """speed added to the ball by a kick"""
    kick_reach: float = 0.035
    """largest gap between player and ball surfaces at which a kick connects"""
    restitution: float = 0.5
    """bounciness of player-player and player-ball contacts"""
    wall_restitution: float = 0.7
    """bounciness of the ball off walls"""
    kickoff_jitter: float = 0.04
    """uniform noise added to each kickoff position (the only randomness in the rules)"""

    reward_goal: float = 1.0
    """weight of the shared team reward: +1 for a goal scored, -1 for one conceded"""
    reward_ball_touch: float = 0.01
    """weight of the individual reward for touching (pushing or kicking) the ball"""
    reward_ball_progress: float = 0.1
    """weight of the individual reward for ball progress towards the opponent goal (in half
    lengths), credited to the player who touched the ball last"""
    reward_shot_on_target: float = 0.1
    """weight of the individual reward for a kick whose straight path ends in the goal mouth"""
    reward_dist_to_ball: float = 0.001
    """weight of the individual penalty: minus the distance to the ball (in half lengths)"""

    def __post_init__(self) -> None:
        for name in ("team_size", "blue_size", "red_size"):
            value = getattr(self, name)
            if value is None and name != "team_size":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TEAM_SIZE:
                raise ValueError(f"{name}={value!r} is invalid: expected an int in [1, {MAX_TEAM_SIZE}]")
        if not isinstance(self.max_cycles, int) or self.max_cycles < 1:
            raise ValueError(f"max_cycles={self.max_cycles!r} is invalid: expected an int >= 1")
        if not isinstance(self.goals_to_win, int) or self.goals_to_win < 0:
            raise ValueError(f"goals_to_win={self.goals_to_win!r} is invalid: expected an int >= 0")
        positive = ("player_radius", "ball_radius", "player_accel", "player_max_speed",
                    "ball_max_speed", "ball_mass", "kick_power")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: expected a value > 0")
        for name in ("player_drag", "ball_friction"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: expected 0 < value < 1")
        for name in ("restitution", "wall_restitution"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: expected 0 <= value <= 1")
        if self.kick_reach < 0 or self.kickoff_jitter < 0:
            raise ValueError("kick_reach and kickoff_jitter must be >= 0")
        for name in ("half_length", "half_width", "goal_half_width"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name}={value!r} is invalid: expected None (automatic) or > 0")
        for name in ("reward_goal", "reward_ball_touch", "reward_ball_progress", "reward_shot_on_target",
                     "reward_dist_to_ball"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name}={value!r} is invalid: expected a finite number")
        if self.resolved_goal_half_width >= self.resolved_half_width:
            raise ValueError(f"goal_half_width={self.resolved_goal_half_width} must be smaller than "
                             f"half_width={self.resolved_half_width}")

    # ------------------------------------------------------------------ derived values
    @property
    def n_blue(self) -> int:
        return self.blue_size if self.blue_size is not None else self.team_size

    @property
    def n_red(self) -> int:
        return self.red_size if self.red_size is not None else self.team_size

    @property
    def num_agents(self) -> int:
        return self.n_blue + self.n_red

    @property
    def max_team(self) -> int:
        return max(self.n_blue, self.n_red)

    @property
    def resolved_half_length(self) -> float:
        """The pitch's half length in use: `half_length`, or when None one that grows like
        sqrt(players per side) beyond 3 a side."""
        if self.half_length is not None:
            return float(self.half_length)
        return max(1.0, math.sqrt(self.max_team / 3.0))

    @property
    def resolved_half_width(self) -> float:
        """The pitch's half width in use: `half_width`, or 0.62 of the resolved half length."""
        return float(self.half_width) if self.half_width is not None else 0.62 * self.resolved_half_length

    @property
    def resolved_goal_half_width(self) -> float:
        """The goal mouth's half width in use: `goal_half_width`, or 0.16 of the resolved half length."""
        return float(self.goal_half_width) if self.goal_half_width is not None else 0.16 * self.resolved_half_length

    @property
    def agents(self) -> list[str]:
        return [f"blue_{i}" for i in range(self.n_blue)] + [f"red_{i}" for i in range(self.n_red)]

    @property
    def reward_weights(self) -> dict[str, float]:
        return {name: float(getattr(self, f"reward_{name}")) for name in REWARD_COMPONENTS}

    def obs_layout(self) -> dict[str, Any]:
        """Column slices of one agent's observation vector (see `observation_features`)."""
        layout: dict[str, Any] = {}
        col = 0
        for name, width in self.observation_features():
            layout[name] = slice(col, col + width)
            col += width
        layout["dim"] = col
        layout["num_teammates"] = self.max_team - 1
        layout["num_opponents"] = self.max_team
        layout["entity_dim"] = 5
        return layout

    def observation_features(self) -> list[tuple[str, int]]:
        """(name, width) of each block of an agent's observation, in order.

        Everything is in the agent's mirrored frame (it always attacks +x), positions are divided
        by the half length and velocities by the player top speed (the ball's by `kick_power`).
        """
        return [
            ("self_pos", 2),        # own position on the pitch
            ("self_vel", 2),        # own velocity
            ("ball_rel", 2),        # ball position relative to the agent
            ("ball_vel", 2),        # ball velocity
            ("ball_in_reach", 1),   # 1 if a kick would connect now
            ("teammates", 5 * (self.max_team - 1)),  # per teammate in slot order: rel pos, vel, present
            ("opponents", 5 * self.max_team),        # per opponent in slot order: rel pos, vel, present
            ("opp_goal_rel", 2),    # centre of the goal the agent attacks, relative to it
            ("own_goal_rel", 2),    # centre of the goal it defends, relative to it
            ("time_left", 1),       # 1 at kickoff, 0 at the time limit
            ("score", 2),           # 0.2 * (own goals, opponent goals)
            ("slot", self.max_team),  # one-hot of the agent's slot in its team
            ("team", 2),            # one-hot: (blue, red)
        ]

    @property
    def obs_dim(self) -> int:
        return self.obs_layout()["dim"]

    @property
    def state_dim(self) -> int:
        """Global state: every player's pos and vel, ball pos and vel, time left, score."""
        return 4 * self.num_agents + 4 + 1 + 2

    # ------------------------------------------------------------------ bounds
    def bound_magnitudes(self) -> dict[str, float]:
        """Largest absolute value each kind of observed quantity can take, in observation units.

        Worst cases proved from the rules in `soccer.py` (one step: kicks, move, drag and top
        speed, player-player then player-ball contacts, walls, goals, kickoff), for any valid
        config. Float32 rounding is covered later by a small outward pad. Keys:
        `pos_x, pos_y` (a player, / L), `ball_x, ball_y` (the ball, / L), `player_vel`
        (a player velocity component, / player_max_speed), `ball_vel` (/ kick_power), `goals`
        (goals one team can have in a match) and `ball_step` (the ball's largest move in one step,
        pitch units).
        """
        L, W = self.resolved_half_length, self.resolved_half_width
        pr, br, N = self.player_radius, self.ball_radius, self.num_agents
        vmax, bmax, kp, e = self.player_max_speed, self.ball_max_speed, self.kick_power, self.restitution
        jitter = self.kickoff_jitter
        # Players. During play positions are clipped to |x| <= L - pr, |y| <= W - pr (abs(): on a
        # pitch narrower than a player the clip pins them at that value). A kickoff puts them on
        # `kickoff_formation` spots, unclipped: |x| <= 0.88 L (the goalkeeper, 4 a side and up) or
        # 0.3 L (one line, up to 3 a side), |y| < 0.75 W, plus at most `kickoff_jitter` each.
        kick_x = (0.88 if self.max_team >= 4 else 0.3) * L
        pos_x = max(abs(L - pr), kick_x + jitter)
        pos_y = max(abs(W - pr), 0.75 * W + jitter)
        # The ball's velocity is capped at ball_max_speed after every contact, and the wall bounce
        # only scales a component by -wall_restitution; a kickoff zeroes it. Within a step it can be
        # faster: the move uses the velocity after the kicks (at most one kick_power per player).
        ball_vel_in_step = bmax + N * kp
        # Ball position. y is always clipped to |y| <= W - br. In x: inside a goal mouth |x| <= L,
        # else it is a goal and a kickoff puts the ball on the centre spot. Outside a mouth a ball
        # at |x| = x_lim + over (x_lim = L - br) is reflected to |x_lim - over|, so after the step
        # |x| <= max(L, |x_lim|, pre - 2 x_lim), where pre bounds |x| before the walls:
        #  - kicked: a kicker stands within reach of the ball, which then moves <= ball_vel_in_step;
        #  - pushed by players: it ends within pr + br of a pusher (whose |x| is at most pos_x plus
        #    one move and N - 1 player-player pushes of <= pr, before the clip) plus the pushes;
        #  - neither: it rolls <= bmax from where it was. This case only grows the bound if the
        #    ball can roll further than 2 x_lim in one step (absurd configs), by that excess per step.
        x_lim = L - br
        reach = pr + br + self.kick_reach
        pre = max(pos_x + reach + ball_vel_in_step,
                  pos_x + vmax + (N - 1) * pr + (N + 1) * (pr + br))
        ball_x = max(L, abs(x_lim), pre - 2.0 * x_lim) + self.max_cycles * max(0.0, bmax - 2.0 * x_lim)
        # The ball's largest move in one step: its velocity after the kicks plus the push out of
        # every overlapping player (<= pr + br each); used for the goal count below.
        ball_step = ball_vel_in_step + N * (pr + br)
        ball_y = abs(W - br)
        # Player velocity. Top speed is enforced before the contacts, not after: each of the N - 1
        # player-player contacts adds at most (1 + e) / 2 * (closing speed <= 2 vmax) along its
        # normal, and the player-ball contact changes the normal component v_n to
        # (1 - beta) v_n + beta b_n with beta = (1 + e) m / (1 + m) in (0, 2), i.e. adds at most
        # beta * |ball velocity| (after kicks and friction); a wall only zeroes a component.
        beta = (1.0 + e) * self.ball_mass / (1.0 + self.ball_mass)
        player_vel = vmax * (1.0 + (N - 1) * (1.0 + e)) + beta * (1.0 - self.ball_friction) * ball_vel_in_step
        # Goals. A goal needs the ball past |x| > L, and a kickoff puts it on the centre spot, so
        # goals are at least k = floor(L / ball_step) + 1 steps apart (a wall bounce never moves it
        # further from the centre); goals_to_win, if set, ends the match at that many.
        goals = self.max_cycles // (math.floor(L / ball_step) + 1)
        if self.goals_to_win > 0:
            goals = min(goals, self.goals_to_win)
        return {
            "pos_x": pos_x / L, "pos_y": pos_y / L, "ball_x": ball_x / L, "ball_y": ball_y / L,
            "player_vel": player_vel / vmax, "ball_vel": bmax / kp,
            "goals": float(max(goals, 1)),  # >= 1 so no bound has zero width (normalizers divide by it)
            "ball_step": ball_step,
        }

    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high), float32 [obs_dim]: bounds no observation can leave, block by block in
        `observation_features` order (the proofs are in `bound_magnitudes`).

        Continuous blocks (and the top of the score) are padded outwards by 1e-5 relative + 1e-6
        to absorb float32 rounding; flags, one-hots and time_left are exact.
        """
        m = self.bound_magnitudes()
        px, py, vel = m["pos_x"], m["pos_y"], m["player_vel"]
        lows: list[float] = []
        highs: list[float] = []

        def add(low: list[float], high: list[float], pad: bool = True) -> None:
            for lo, hi in zip(low, high):
                lows.append(lo - (1e-5 * abs(lo) + 1e-6) if pad else lo)
                highs.append(hi + (1e-5 * abs(hi) + 1e-6) if pad else hi)

        for name, width in self.observation_features():
            if name == "self_pos":  # mirrored own position (symmetric pitch)
                add([-px, -py], [px, py])
            elif name == "self_vel":  # see player_vel: speed is not re-capped after contacts
                add([-vel] * 2, [vel] * 2)
            elif name == "ball_rel":  # ball minus own position
                add([-m["ball_x"] - px, -m["ball_y"] - py], [m["ball_x"] + px, m["ball_y"] + py])
            elif name == "ball_vel":  # capped at ball_max_speed, in units of kick_power
                add([-m["ball_vel"]] * 2, [m["ball_vel"]] * 2)
            elif name == "ball_in_reach":  # 0/1
                add([0.0], [1.0], pad=False)
            elif name in ("teammates", "opponents"):  # per slot: rel pos (two positions), vel, present 0/1;
                for _ in range(width // 5):             # a missing slot is all zeros
                    add([-2 * px, -2 * py, -vel, -vel], [2 * px, 2 * py, vel, vel])
                    add([0.0], [1.0], pad=False)
            elif name == "opp_goal_rel":  # (1 - x, -y)
                add([1.0 - px, -py], [1.0 + px, py])
            elif name == "own_goal_rel":  # (-1 - x, -y)
                add([-1.0 - px, -py], [-1.0 + px, py])
            elif name == "time_left":  # 1 - t / max_cycles with 0 <= t <= max_cycles (exact in float32)
                add([0.0], [1.0], pad=False)
            elif name == "score":  # 0.2 * goals (see `goals`); only the top padded, for the float32 product
                add([0.0] * 2, [0.2 * m["goals"]] * 2)
                lows[-2:] = [0.0, 0.0]
            elif name in ("slot", "team"):  # one-hot
                add([0.0] * width, [1.0] * width, pad=False)
            else:  # a new block must get its own bound
                raise NotImplementedError(f"no bound for observation block {name!r}")
        return np.asarray(lows, dtype=np.float32), np.asarray(highs, dtype=np.float32)

    def state_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high), float32 [state_dim]: bounds of `SoccerEngine.global_state` (world frame):
        every player's x, y, vx, vy, ball x, y, vx, vy, time left, score; see `observation_bounds`."""
        m = self.bound_magnitudes()
        N, pad = self.num_agents, lambda v: v * (1.0 + 1e-5) + 1e-6
        high = ([pad(m["pos_x"])] * N + [pad(m["pos_y"])] * N + [pad(m["player_vel"])] * 2 * N
                + [pad(m["ball_x"]), pad(m["ball_y"]), pad(m["ball_vel"]), pad(m["ball_vel"]), 1.0]
                + [pad(0.2 * m["goals"])] * 2)
        high_arr = np.asarray(high, dtype=np.float32)
        low_arr = -high_arr
        low_arr[-3:] = 0.0  # time left and score
        return low_arr, high_arr

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "SoccerConfig":
        """Build from keyword arguments; a misspelt argument raises, naming it (VMAS style)."""
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise TypeError(
                f"unknown soccer argument(s) {unknown}; allowed arguments are: {sorted(allowed)}"
            )
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


__all__ = [
    "ACTION_NAMES",
    "KICK_ACTION",
    "INFO_KEYS",
    "MAX_TEAM_SIZE",
    "NUM_ACTIONS",
    "REWARD_COMPONENTS",
    "SoccerConfig",
]
