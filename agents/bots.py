"""Scripted soccer bots: a fixed yardstick for evaluation, batched over every match at once.

Every bot reads the vector env's observations `obs [B, N, D]` (any leading shape `[..., D]`
works, e.g. the PettingZoo env's `[N, D]` stacked per agent) and returns an action for every
agent, `int64 [B, N]`; the caller keeps the columns of the team the bot controls. Observations
are egocentric and mirrored (see `marl_grpo.envs.soccer_v0`), so one rule plays either side:
each agent attacks +x, its own goal is at x = -1 and the opponent goal at x = +1 (positions are
in half lengths). There is no Python loop over matches or players: an agent's role comes from
what it sees of its teammates, so every agent of every match decides in the same tensor ops.

| bot | play |
|---|---|
| `RandomBot` | uniform random actions |
| `ChaserBot` | every player chases the ball: it runs to a point behind the ball on the goal->ball line, then dribbles and kicks when the kick would go on target |
| `TeamBot` | positional: the player nearest the ball attacks it as a chaser does, the one nearest its own goal among the rest guards the line from the ball to its goal, the others spread across the pitch in support |

`strength` in [0, 1] weakens a bot: each step, with probability `(1 - strength) / 2` an agent
takes a uniformly random action, and with probability `(1 - strength) / 2` it repeats its
previous action (a reaction delay). Each bot draws from its own `torch.Generator`, so a bot's
actions depend only on its seed and the observations it is shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from marl_grpo.envs.config import KICK_ACTION, NUM_ACTIONS, SoccerConfig

BOT_NAMES = ("random", "chaser", "team")

# Steering and geometry, in half lengths and steps. Tuned by win rates on 2v2 and 3v3 (see
# tests/test_bots.py); they depend on the default physics only through the config-derived
# values below (player/ball radii, top speeds).
ARRIVE_STEPS = 4.0
"""a player heading for a point wants to cover the gap in this many steps (capped at top speed)"""
SPRINT_FACTOR = 1.0
"""a sprinting player wants this multiple of top speed (drag costs speed every step)"""
FUNNEL = 4.0
"""an attacker off the goal-ball line by `e` aims `FUNNEL * e - contact` behind the ball on it"""
DEFENDER_GAP = 0.12
DEFENDER_MIN_DEPTH = 0.12
SUPPORT_BEHIND = 0.15
SUPPORT_WIDTH = 0.7
STAY_FRACTION = 0.5
"""a player stays when its velocity is this fraction of one step's acceleration from the one it wants"""
BALL_LEAD_STEPS = 3.0
"""the ball is chased where it will be this many steps ahead (at most)"""
SHOT_MARGIN = 0.85
"""a kick is taken if the straight ball path crosses the goal line within this fraction of the mouth"""


def direction_to_action(direction: torch.Tensor, stay_radius: float = 0.0) -> torch.Tensor:
    """The compass move closest in angle to each desired direction; stay when it is short.

    Args:
        direction: float [..., 2], a desired displacement (x, y) in the agent's own frame.
        stay_radius: where `|direction| <= stay_radius` the action is 0 (stay).
    Returns:
        int64 [...]: actions 1..8 (E, NE, N, NW, W, SW, S, SE, counter-clockwise from +x), or 0.
    """
    angle = torch.atan2(direction[..., 1], direction[..., 0])
    sector = torch.round(angle * (4.0 / math.pi)).long() % 8
    action = sector + 1
    short = direction.norm(dim=-1) <= stay_radius
    return torch.where(short, torch.zeros_like(action), action)


@dataclass
class ObsView:
    """Named views of a batch of observations, in half lengths and half lengths per step.

    Shapes: `[...]` is the leading shape of the observations (e.g. `[B, N]`), K = M - 1
    teammates and M opponents per agent (M = the larger team size). Positions are absolute
    (own frame: own goal at x = -1, opponent goal at x = +1).
    """

    pos: torch.Tensor          # [..., 2] the agent itself
    vel: torch.Tensor          # [..., 2]
    ball: torch.Tensor         # [..., 2]
    ball_vel: torch.Tensor     # [..., 2]
    ball_vel_kick: torch.Tensor  # [..., 2] ball velocity in units of `kick_power`
    in_reach: torch.Tensor     # [...] bool: a kick would connect now
    mates: torch.Tensor        # [..., K, 2]
    mates_present: torch.Tensor  # [..., K] bool
    slot: torch.Tensor         # [...] int64: the agent's slot in its team
    mate_slots: torch.Tensor   # [..., K] int64: each teammate's slot

    @classmethod
    def parse(cls, obs: torch.Tensor, config: SoccerConfig) -> "ObsView":
        layout = config.obs_layout()
        L = config.half_length_
        K = layout["num_teammates"]

        def block(name: str) -> torch.Tensor:
            return obs[..., layout[name]]

        pos = block("self_pos")
        mates = block("teammates").reshape(*obs.shape[:-1], K, 5)
        slot = block("slot").argmax(-1)
        k = torch.arange(K, device=obs.device)
        return cls(
            pos=pos,
            vel=block("self_vel") * (config.player_max_speed / L),
            ball=pos + block("ball_rel"),
            ball_vel=block("ball_vel") * (config.kick_power / L),
            ball_vel_kick=block("ball_vel"),
            in_reach=block("ball_in_reach")[..., 0] > 0.5,
            mates=pos[..., None, :] + mates[..., 0:2],
            mates_present=mates[..., 4] > 0.5,
            slot=slot,
            mate_slots=k + (k >= slot[..., None]).long(),
        )


class Bot:
    """Base class of the scripted bots: the strength noise, the generator and the memory.

    Subclasses implement `decide(obs) -> int64 [...]`, their best action for every agent.

    Args:
        config: the match configuration (team sizes and geometry give the observation layout).
        strength: in [0, 1]; 1 is the best play, 0 half random actions and half repeats.
        seed: seeds the bot's own `torch.Generator`.
        device: where the generator lives; actions are returned on the observations' device.
    """

    def __init__(self, config: SoccerConfig, strength: float = 1.0, seed: int = 0, device: Any = "cpu"):
        if not isinstance(config, SoccerConfig):
            raise TypeError(f"config must be a SoccerConfig, got {type(config).__name__}")
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength={strength!r} is invalid: expected a number in [0, 1]")
        self.config = config
        self.strength = float(strength)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self._obs_dim = config.obs_dim
        self.previous: torch.Tensor | None = None

    def reset(self, seed: int | None = None) -> None:
        """Forget the previous actions (call at the start of new matches); re-seed if `seed` is given."""
        self.previous = None
        if seed is not None:
            self.seed = int(seed)
            self.generator.manual_seed(self.seed)

    def _uniform(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=self.device).to(device)

    def _random_actions(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        actions = torch.randint(0, NUM_ACTIONS, shape, generator=self.generator, device=self.device)
        return actions.to(device)

    def act(self, obs: Any) -> torch.Tensor:
        """Actions for every agent: obs float [..., D] (e.g. [B, N, D]) -> int64 [...] (e.g. [B, N])."""
        obs = torch.as_tensor(obs)
        if not obs.is_floating_point():
            obs = obs.float()
        if obs.ndim < 1 or obs.shape[-1] != self._obs_dim:
            raise ValueError(
                f"obs must have shape [..., obs_dim={self._obs_dim}] for this config, got {tuple(obs.shape)}"
            )
        shape = tuple(obs.shape[:-1])
        actions = self.decide(obs)
        if self.strength < 1.0:
            noise = 1.0 - self.strength
            u = self._uniform(shape, obs.device)
            random_actions = self._random_actions(shape, obs.device)
            previous = self.previous
            if previous is None or tuple(previous.shape) != shape or previous.device != obs.device:
                previous = torch.zeros(shape, dtype=torch.long, device=obs.device)
            actions = torch.where(u < 0.5 * noise, random_actions, torch.where(u < noise, previous, actions))
        self.previous = actions
        return actions

    def decide(self, obs: torch.Tensor) -> torch.Tensor:
        """The bot's own action for every agent, before the strength noise: int64 [...]."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(strength={self.strength}, seed={self.seed})"


class RandomBot(Bot):
    """Uniformly random actions (the strength knob changes nothing here)."""

    def decide(self, obs: torch.Tensor) -> torch.Tensor:
        return self._random_actions(tuple(obs.shape[:-1]), obs.device)


class _SteeringBot(Bot):
    """Shared skills of the playing bots: steering to a point, attacking the ball, shooting."""

    def __init__(self, config: SoccerConfig, strength: float = 1.0, seed: int = 0, device: Any = "cpu"):
        super().__init__(config, strength, seed, device)
        L = config.half_length_
        self.contact = (config.player_radius + config.ball_radius) / L
        """centre distance at which a player touches the ball"""
        self.goal_mouth = config.goal_half_width_ / L
        self.half_width = config.half_width_ / L
        self.player_speed = config.player_max_speed / L
        self.accel = config.player_accel / L
        self.radius = config.player_radius / L

    def steer(self, view: ObsView, target: torch.Tensor, sprint: bool | torch.Tensor = False,
              target_vel: torch.Tensor | None = None) -> torch.Tensor:
        """Compass action towards `target [..., 2]`: int64 [...].

        The player picks the acceleration that best turns its velocity into the one it wants:
        `target_vel + (target - pos) / ARRIVE_STEPS`, capped at top speed, so it slows down on
        arrival and then keeps pace with a moving target (`target_vel [..., 2]`, e.g. the
        ball's); with `sprint` (bool or bool [...]) it wants a little over top speed all the
        way. Correcting the velocity, not the heading, lets 8 compass moves hold any course.
        """
        gap = target - view.pos
        speed = self.player_speed
        arrive = gap / ARRIVE_STEPS
        if target_vel is not None:
            arrive = arrive + target_vel
        arrive = arrive * (speed / arrive.norm(dim=-1, keepdim=True).clamp(min=speed))
        dash = gap * (SPRINT_FACTOR * speed / gap.norm(dim=-1, keepdim=True).clamp(min=1e-6))
        desired = torch.where(torch.as_tensor(sprint, device=gap.device)[..., None], dash, arrive)
        return direction_to_action(desired - view.vel, STAY_FRACTION * self.accel)

    def on_pitch(self, point: torch.Tensor) -> torch.Tensor:
        """Clamp points [..., 2] to where a player can stand."""
        limit = torch.tensor([1.0 - self.radius, self.half_width - self.radius], device=point.device)
        return torch.maximum(torch.minimum(point, limit), -limit)

    def ball_ahead(self, view: ObsView) -> torch.Tensor:
        """Where the ball will be when the agent gets near it (a short, capped lead): [..., 2]."""
        dist = (view.ball - view.pos).norm(dim=-1, keepdim=True)
        lead = (dist / self.player_speed).clamp(max=BALL_LEAD_STEPS)
        ahead = view.ball + view.ball_vel * lead
        limit = torch.tensor([1.0, self.half_width], device=ahead.device)
        return torch.maximum(torch.minimum(ahead, limit), -limit)

    def shot_on_target(self, view: ObsView) -> torch.Tensor:
        """bool [...]: would a kick now send the ball straight into the opponent goal mouth?

        The kick adds `kick_power` along the player->ball line to the ball's velocity, so in
        units of `kick_power` the ball leaves along `ball_vel + unit(ball - player)`.
        """
        line = view.ball - view.pos
        out = view.ball_vel_kick + line / line.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        need = 1.0 - view.ball[..., 0]
        forward = out[..., 0] > 1e-3
        cross_y = view.ball[..., 1] + out[..., 1] * need / out[..., 0].clamp(min=1e-3)
        return view.in_reach & forward & (cross_y.abs() <= SHOT_MARGIN * self.goal_mouth)

    def clearance(self, view: ObsView) -> torch.Tensor:
        """bool [...]: a kick now would send the ball firmly away from the own goal."""
        line = view.ball - view.pos
        out = view.ball_vel_kick + line / line.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        return view.in_reach & (out[..., 0] > 0.5 * out.norm(dim=-1))

    def attack(self, view: ObsView) -> torch.Tensor:
        """Go for the ball from behind (on the line from the opponent goal through the ball) and
        shoot when the kick would go in; int64 [...].

        A player in front of the ball circles round it on its own side, so it does not push
        the ball towards its own goal; once behind it, it runs through the ball, dribbling it
        goalwards, until a kick lines up.
        """
        ball = self.ball_ahead(view)
        goal = torch.zeros_like(ball)
        goal[..., 0] = 1.0
        # aim at the near half of the mouth: an angled shot is as good and needs less circling
        goal[..., 1] = ball[..., 1].clamp(-0.5 * self.goal_mouth, 0.5 * self.goal_mouth)
        to_goal = goal - ball
        d = to_goal / to_goal.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        n = torch.stack([-d[..., 1], d[..., 0]], -1)
        rel = view.pos - ball
        along = (rel * d).sum(-1, keepdim=True)
        lateral = (rel * n).sum(-1, keepdim=True)
        contact = self.contact
        behind = 2.0 * contact
        aligned = (along < -0.5 * contact) & (lateral.abs() < 0.5 * (-along) + 0.5 * contact)
        # aligned: home in on the line, then run through the ball once on it (a funnel: the
        # further off the line, the further behind the ball the aim point)
        approach = torch.maximum(FUNNEL * lateral.abs() - contact, torch.where(-along > 3.0 * contact, -0.5 * along, -contact))
        through = ball - d * approach
        # level with the ball: to a point behind it
        back = ball - d * behind
        # level with it or in front: round it on the own side, or the other if a wall is in the
        # way; first to a point beside the ball, then to one behind it and a little aside
        side = torch.where(lateral >= 0, 1.0, -1.0)
        level = along < 0.0
        offset = torch.where(level, contact, 2.0 * contact + 0.5 * along.clamp(min=0.0))
        retreat = torch.where(level, -behind, -0.5 * contact)
        around = self.on_pitch(ball + d * retreat + n * side * offset)
        blocked = (around - ball).norm(dim=-1, keepdim=True) < contact
        around = torch.where(blocked, self.on_pitch(ball + d * retreat - n * side * offset), around)
        target = torch.where(aligned, through, torch.where(along < -contact, back, around))
        move = self.steer(view, self.on_pitch(target), sprint=aligned[..., 0], target_vel=view.ball_vel)
        return torch.where(self.shot_on_target(view), torch.full_like(move, KICK_ACTION), move)


class ChaserBot(_SteeringBot):
    """Every player chases the ball (the classic "kids' football" swarm).

    Each player runs to a point behind the ball on the line from the opponent goal through the
    ball, then runs through the ball towards the goal, and kicks when the ball is in reach and
    the kick would go on target. Players do not hold positions; teammates crowd the ball.
    """

    def decide(self, obs: torch.Tensor) -> torch.Tensor:
        return self.attack(ObsView.parse(obs, self.config))


class TeamBot(_SteeringBot):
    """A positional team: one attacker, one defender, the rest in support.

    Roles are worked out by every agent from what it sees, so they agree across the team:

    - **attacker:** the player nearest the ball attacks it (as `ChaserBot` does);
    - **defender:** of the others, the one nearest its own goal holds a point on the line from
      the ball to its own goal centre, a short way out of goal, and clears the ball forward when
      it reaches it;
    - **support:** the rest spread over the pitch width at a fixed depth around the ball,
      sorted by their y so that they do not cross, and clear or shoot when the ball comes.

    A team of one only attacks; a team of two has an attacker and a defender.
    """

    def decide(self, obs: torch.Tensor) -> torch.Tensor:
        view = ObsView.parse(obs, self.config)
        # the whole team as this agent sees it, itself first: [..., K + 1]
        team = torch.cat([view.pos[..., None, :], view.mates], -2)
        itself = torch.ones_like(view.slot, dtype=torch.bool)[..., None]
        present = torch.cat([itself, view.mates_present], -1)
        # slot order breaks ties, so that teammates agree on the roles
        tie = 1e-5 * torch.cat([view.slot[..., None], view.mate_slots], -1).float()
        inf = torch.tensor(float("inf"), device=obs.device)

        # attacker: nearest the ball
        to_ball = torch.where(present, (team - view.ball[..., None, :]).norm(dim=-1) + tie, inf)
        attacker = to_ball.argmin(-1, keepdim=True)
        not_attacker = present.scatter(-1, attacker, False)
        # defender: nearest the own goal among the others
        own_goal = torch.tensor([-1.0, 0.0], device=obs.device)
        to_goal = torch.where(not_attacker, (team - own_goal).norm(dim=-1) + tie, inf)
        defender = to_goal.argmin(-1, keepdim=True)
        supporter = not_attacker.scatter(-1, defender, False)
        is_attacker = attacker[..., 0] == 0
        is_defender = (defender[..., 0] == 0) & ~is_attacker
        # support: ranked by y (then slot), so that supporters spread without crossing
        y = team[..., 1] + tie
        rank = (supporter & (y < y[..., :1])).sum(-1)
        num_support = supporter.sum(-1)

        ball = self.ball_ahead(view)
        actions = self.attack(view)

        # defender: on the line from the ball to the own goal, a gap goal-side of the ball (but
        # not inside the goal mouth); it engages the ball when it comes close, from goal side
        to_ball = ball - own_goal
        dist = to_ball.norm(dim=-1, keepdim=True)
        depth = (dist - DEFENDER_GAP).clamp(min=DEFENDER_MIN_DEPTH)
        guard = own_goal + to_ball / dist.clamp(min=1e-6) * depth
        defend = self.steer(view, guard)
        defend = torch.where(self.clearance(view) | self.shot_on_target(view), KICK_ACTION, defend)

        # support: a line across the pitch, just behind the ball, between the penalty areas
        spread = (rank.float() + 1.0) / (num_support.float() + 1.0) * 2.0 - 1.0
        support_y = spread * SUPPORT_WIDTH * self.half_width
        support_x = (ball[..., 0] - SUPPORT_BEHIND).clamp(-0.55, 0.6)
        support = self.steer(view, torch.stack([support_x, support_y], -1))
        support = torch.where(self.clearance(view) | self.shot_on_target(view), KICK_ACTION, support)

        actions = torch.where(is_attacker, actions, torch.where(is_defender, defend, support))
        return actions


_BOTS = {"random": RandomBot, "chaser": ChaserBot, "team": TeamBot}


def make_bot(name: str, config: SoccerConfig, strength: float = 1.0, seed: int = 0, device: Any = "cpu") -> Bot:
    """Build a scripted bot by name: one of "random", "chaser", "team"."""
    if name not in _BOTS:
        raise ValueError(f"unknown bot {name!r}: expected one of {list(BOT_NAMES)}")
    return _BOTS[name](config, strength=strength, seed=seed, device=device)


__all__ = [
    "BOT_NAMES",
    "Bot",
    "ChaserBot",
    "ObsView",
    "RandomBot",
    "TeamBot",
    "direction_to_action",
    "make_bot",
]
