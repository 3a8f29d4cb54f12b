"""Scripted soccer bots: a fixed yardstick for evaluation, batched over every match at once.

Every bot reads the vector env's observations `obs [B, N, D]` (any leading shape `[..., D]`
works, e.g. the PettingZoo env's `[N, D]` stacked per agent) and returns an action for every
agent, `int64 [B, N]`. Each agent decides from its own observation alone, so showing a bot only
its team's rows (`bot.act(obs[:, n_blue:])` for red) gives that team the same actions at full
strength for half the work; the trainer, the league and evaluation do so. Observations
are egocentric and mirrored (see `marl_grpo.envs.soccer_v0`), so one rule plays either side:
each agent attacks +x, its own goal is at x = -1 and the opponent goal at x = +1 (positions are
in half lengths). There is no Python loop over matches or players: an agent's role comes from
what it sees of its teammates, so every agent of every match decides in the same tensor ops.

| bot | play |
|---|---|
| `RandomBot` | uniform random actions |
| `ChaserBot` | every player chases the ball: it runs to a point behind the ball on the goal->ball line, then dribbles and kicks when the kick would go on target |
| `TeamBot` | positional: the player nearest the ball attacks it as a chaser does; a defender covers goal-side of the ball, a sweeper (3 a side and up) holds the line from its goal to the ball, the rest support on an arc behind the ball |

`strength` in [0, 1] weakens a bot: each step, with probability `(1 - strength) / 2` an agent
takes a uniformly random action, and with probability `(1 - strength) / 2` it repeats its
previous action (a reaction delay). Each bot draws from its own `torch.Generator`, so a bot's
actions depend only on its seed and the observations it is shown.

`compile=True` runs `decide` through `torch.compile` (one graph with dynamic batch size, shared by
every bot of a class and config): the playing bots' ~150 small elementwise ops fuse into a few
loops, several times faster on the CPU (figures: docs/benchmarks.md), for a one-off build
(shorter once inductor's cache in the temp folder holds it). The actions are the eager ones
(tests/test_bots.py compares them over full matches). If the build fails (no C++ compiler,
say), the bot warns once and plays eagerly.

    env = SoccerVecEnv(num_envs=200, team_size=2)
    blue, red = make_bot("team", env.config, seed=1), make_bot("random", env.config, seed=2)
    obs = env.reset(seed=0)
    nb = env.config.n_blue
    actions = torch.cat([blue.act(obs)[:, :nb], red.act(obs)[:, nb:]], 1)

Measured at the default physics over 200 matches of 300 steps (wins-losses, goals per match):
TeamBot vs RandomBot, 2v2: 200-0, 8.1 to 0.0; ChaserBot vs ChaserBot, 2v2: 90-81; TeamBot vs
ChaserBot: 128-33 (2v2), 132-42 (3v3), 133-29 (5v5).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch

from .backend import resolve_device
from .config import KICK_ACTION, NUM_ACTIONS, SoccerConfig

BOT_NAMES = ("random", "chaser", "team")

# Tuning, in half lengths and steps. Chosen by win rates of 200 matches, 2v2 to 5v5, against
# `ChaserBot` and `RandomBot` with the default physics (see tests/test_bots.py).
ARRIVE_STEPS = 4.0
"""a player heading for a point wants to cover the gap in this many steps (capped at top speed)"""
SPRINT_FACTOR = 1.0
"""a sprinting player wants this multiple of top speed"""
STAY_FRACTION = 0.5
"""a player stays when its velocity is within this fraction of one step's acceleration of the
one it wants"""
BALL_LEAD_STEPS = 3.0
"""the ball is chased where it will be this many steps ahead (at most)"""
FUNNEL = 4.0
"""an attacker off the goal-ball line by `e` aims at the point `FUNNEL * e - contact` behind
the ball on that line, so it closes in on the line as it closes in on the ball"""
SHOT_MARGIN = 0.85
"""a kick is taken if the straight ball path crosses the goal line within this fraction of the
goal mouth"""
DEFENDER_GAP = 0.12
"""the defender stands this far goal-side of the ball, on the ball-own goal line"""
DEFENDER_MIN_DEPTH = 0.12
"""... but no closer than this to its own goal centre"""
KEEPER_MIN_TEAM = 3
"""teams at least this big also keep a sweeper back"""
KEEPER_DEPTH = 0.35
"""the sweeper stands this far out of its goal centre, on the line to the ball"""
SUPPORT_RADIUS = 0.15
"""supporters stand on an arc of this radius goal-side of the ball ..."""
SUPPORT_ANGLE = 1.0
"""... spread over this angle (radians) either side of straight back (-x) from the ball"""


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
        L = config.resolved_half_length
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
        device: where the generator lives ("auto", "cpu", "cuda", ...); actions are returned
            on the observations' device.
    """

    compilable: ClassVar[bool] = False
    """whether `compile=True` runs `decide` through torch.compile (the playing bots: many small ops)"""

    def __init__(self, config: SoccerConfig, strength: float = 1.0, seed: int = 0, device: Any = "cpu",
                 compile: bool = False):
        if not isinstance(config, SoccerConfig):
            raise TypeError(f"config must be a SoccerConfig, got {type(config).__name__}")
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength={strength!r} is invalid: expected a number in [0, 1]")
        self.config = config
        self.strength = float(strength)
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self._obs_dim = config.obs_dim
        self.previous: torch.Tensor | None = None
        self.compiled = bool(compile) and self.compilable
        """`decide` runs through `torch.compile` (see the module docstring)"""
        self.shard = (0, 1)
        """(index, count): the observations are slice `index` of `count` equal slices (along the
        first dim) of a larger batch, and the random draws are those of the whole batch's slice, so
        that a batch split over processes plays exactly as the whole batch in one process"""

    def reset(self, seed: int | None = None) -> None:
        """Forget the previous actions (call at the start of new matches); re-seed if `seed` is given."""
        self.previous = None
        if seed is not None:
            self.seed = int(seed)
            self.generator.manual_seed(self.seed)

    def _uniform(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        index, count = self.shard
        draws = torch.rand((count * shape[0], *shape[1:]) if shape else shape, generator=self.generator,
                           device=self.device)
        return draws.view(count, *shape)[index].to(device) if shape else draws.to(device)

    def _random_actions(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        index, count = self.shard
        actions = torch.randint(0, NUM_ACTIONS, (count * shape[0], *shape[1:]) if shape else shape,
                                generator=self.generator, device=self.device)
        return actions.view(count, *shape)[index].to(device) if shape else actions.to(device)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The random stream and the memory of previous actions (exact resume)."""
        return {"generator": self.generator.get_state(),
                "previous": None if self.previous is None else self.previous.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        previous = state["previous"]
        self.previous = None if previous is None else previous.to(self.device)

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
        actions = self._compiled_decide(obs) if self.compiled else self.decide(obs)
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

    def _compiled_decide(self, obs: torch.Tensor) -> torch.Tensor:
        """`decide` through the class's compiled graph, on the rows flattened to [R, D] (one dynamic
        dimension); falls back to eager for good if the build fails."""
        rows = obs.reshape(-1, obs.shape[-1]).contiguous()
        if rows.shape[0] < 2:  # dynamo specialises sizes 0 and 1: not worth a graph
            return self.decide(obs)
        try:
            return _compiled(type(self))(self, rows).view(obs.shape[:-1])
        except Exception as err:  # the build (inductor, a C++ compiler) failed: play eagerly
            warnings.warn(f"{type(self).__name__}: torch.compile failed ({type(err).__name__}: {err}); "
                          "the bot plays eagerly", RuntimeWarning, stacklevel=3)
            self.compiled = False
            return self.decide(obs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(strength={self.strength}, seed={self.seed})"


class RandomBot(Bot):
    """Uniformly random actions (the strength knob changes nothing here)."""

    def decide(self, obs: torch.Tensor) -> torch.Tensor:
        return self._random_actions(tuple(obs.shape[:-1]), obs.device)


class _SteeringBot(Bot):
    """Shared skills of the playing bots: steering to a point, attacking the ball, shooting."""

    compilable = True

    def __init__(self, config: SoccerConfig, strength: float = 1.0, seed: int = 0, device: Any = "cpu",
                 compile: bool = False):
        super().__init__(config, strength, seed, device, compile)
        L = config.resolved_half_length
        self.contact = (config.player_radius + config.ball_radius) / L
        """centre distance at which a player touches the ball"""
        self.goal_mouth = config.resolved_goal_half_width / L
        self.half_width = config.resolved_half_width / L
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
        # behind the ball but off the line: to a point on the line behind it
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
    """A positional team: an attacker, a defender, a sweeper (3 a side and up), supporters.

    Every agent works out the roles of its whole team from what it sees (its teammates'
    positions), so the team agrees on them without talking; slot order breaks ties.

    - **attacker:** the player nearest the ball attacks it as `ChaserBot` does (approach from
      behind on the goal-ball line, dribble, shoot when the kick would go in);
    - **sweeper** (teams of `KEEPER_MIN_TEAM` or more): of the others, the one nearest its own
      goal holds the line from its goal centre to the ball, `KEEPER_DEPTH` out of goal;
    - **defender:** the next nearest its own goal covers the attacker: it stands on the
      ball-own goal line, `DEFENDER_GAP` goal-side of the ball, ready for the ball the attacker
      loses;
    - **supporters:** the rest stand on an arc goal-side of the ball, spread by their order in
      y so that they do not cross.

    Everyone but the attacker kicks when the ball comes in reach and the kick would go on target
    or clear it forward. A team of one only attacks; a team of two has an attacker and a
    defender.
    """

    def decide(self, obs: torch.Tensor) -> torch.Tensor:
        view = ObsView.parse(obs, self.config)
        # the whole team as this agent sees it, itself first: [..., K + 1]
        team = torch.cat([view.pos[..., None, :], view.mates], -2)
        itself = torch.ones_like(view.slot, dtype=torch.bool)[..., None]
        present = torch.cat([itself, view.mates_present], -1)
        tie = 1e-5 * torch.cat([view.slot[..., None], view.mate_slots], -1).float()
        inf = torch.tensor(float("inf"), device=obs.device)
        own_goal = torch.tensor([-1.0, 0.0], device=obs.device)

        # roles: the attacker is nearest the ball; the others are ranked by distance to the own
        # goal: rank 0 is the sweeper (if the team has one), the next the defender
        to_ball = torch.where(present, (team - view.ball[..., None, :]).norm(dim=-1) + tie, inf)
        others = present.scatter(-1, to_ball.argmin(-1, keepdim=True), False)
        to_goal = torch.where(others, (team - own_goal).norm(dim=-1) + tie, inf)
        goal_rank = (to_goal[..., None, :] < to_goal[..., :, None]).sum(-1)  # [..., K + 1]
        sweepers = (present.sum(-1, keepdim=True) >= KEEPER_MIN_TEAM).long()  # 0 or 1
        is_attacker = ~others[..., 0]
        is_sweeper = others[..., 0] & (goal_rank[..., 0] < sweepers[..., 0])
        is_defender = others[..., 0] & (goal_rank[..., 0] == sweepers[..., 0])
        supporters = others & (goal_rank > sweepers)
        # supporters are spread by their order in y (then slot), so that they do not cross
        y = team[..., 1] + tie
        support_rank = (supporters & (y < y[..., :1])).sum(-1)
        spread = (support_rank + 1.0) / (supporters.sum(-1) + 1.0) * 2.0 - 1.0  # in (-1, 1)

        ball = self.ball_ahead(view)
        to_ball = ball - own_goal
        goalwards = to_ball / to_ball.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        depth = (to_ball.norm(dim=-1, keepdim=True) - DEFENDER_GAP).clamp(min=DEFENDER_MIN_DEPTH)
        defend = self.steer(view, own_goal + goalwards * depth)
        sweep = self.steer(view, own_goal + goalwards * KEEPER_DEPTH)
        angle = spread * SUPPORT_ANGLE
        arc = torch.stack([-torch.cos(angle), torch.sin(angle)], -1) * SUPPORT_RADIUS
        support = self.steer(view, self.on_pitch(ball + arc), target_vel=view.ball_vel)

        move = torch.where(is_sweeper, sweep, torch.where(is_defender, defend, support))
        kick = self.clearance(view) | self.shot_on_target(view)
        move = torch.where(kick, torch.full_like(move, KICK_ACTION), move)
        return torch.where(is_attacker, self.attack(view), move)


_BOTS = {"random": RandomBot, "chaser": ChaserBot, "team": TeamBot}
_COMPILED: dict[type, Callable[..., torch.Tensor]] = {}


def _compiled(cls: type) -> Callable[..., torch.Tensor]:
    """`torch.compile(cls.decide)`, built once per class: every instance (and config; dynamo guards
    on the attributes it reads) shares the graphs, and the batch size is dynamic."""
    if cls not in _COMPILED:
        _COMPILED[cls] = torch.compile(cls.decide, dynamic=True)
    return _COMPILED[cls]


def make_bot(name: str, config: SoccerConfig, strength: float = 1.0, seed: int = 0, device: Any = "cpu",
             compile: bool = False) -> Bot:
    """Build a scripted bot by name: one of "random", "chaser", "team"; `compile` as in `Bot`."""
    if name not in _BOTS:
        raise ValueError(f"unknown bot {name!r}: expected one of {list(BOT_NAMES)}")
    return _BOTS[name](config, strength=strength, seed=seed, device=device, compile=compile)


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
