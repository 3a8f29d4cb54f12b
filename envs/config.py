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
        if self.goal_half_width_ >= self.half_width_:
            raise ValueError(f"goal_half_width={self.goal_half_width_} must be smaller than half_width={self.half_width_}")

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
    def half_length_(self) -> float:
        """Resolved half length: grows like sqrt(players per side) beyond 3 a side."""
        if self.half_length is not None:
            return float(self.half_length)
        return max(1.0, math.sqrt(self.max_team / 3.0))

    @property
    def half_width_(self) -> float:
        return float(self.half_width) if self.half_width is not None else 0.62 * self.half_length_

    @property
    def goal_half_width_(self) -> float:
        return float(self.goal_half_width) if self.goal_half_width is not None else 0.16 * self.half_length_

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
