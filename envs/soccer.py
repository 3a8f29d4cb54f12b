"""The batched soccer engine: the one source of truth for the rules.

`SoccerEngine` advances `num_envs` matches at once. The state is a dict of arrays, match index
first, with x and y stored apart (structure of arrays: every hot-path op is then a plain
contiguous elementwise op, which is what makes thousands of matches cheap):

    x, y, vx, vy          [B, N]  players (blue slots first, then red), world frame
    ball_x, ball_y,
    ball_vx, ball_vy      [B]
    t                     [B]     steps played in the current match
    score                 [B, 2]  (blue goals, red goals)
    last_touch            [B]     index of the player who touched the ball last, -1 after kickoff
    rng_key, rng_counter  [B]     per-match counter-based random stream (see `uniforms`)

The same code runs on torch tensors (`backend="torch"`, any device: the vector env) and on
numpy arrays (`backend="numpy"`: the PettingZoo env with one match), through `backend.py`.
Per-match random streams make a match's future depend only on its own state, so `branch`
copies of a match stay identical under identical actions.

One step, in order:
 1. actions are decoded in each agent's mirrored frame (see `config.ACTION_NAMES`);
 2. kicks connect if the ball is within reach, along the player->ball line;
 3. players accelerate, feel drag and are capped at top speed; everything moves;
 4. player-player and player-ball contacts are resolved (position correction + impulse);
 5. players are kept on the pitch, the ball bounces off walls except through goal mouths;
 6. goals, rewards, score and clock are updated; a goal triggers a kickoff.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import make_ops
from .config import KICK_ACTION, NUM_ACTIONS, REWARD_COMPONENTS, SoccerConfig

MASK32 = 0xFFFFFFFF
_EPS = 1e-6


# ----------------------------------------------------------------------------- randomness
def _mul32(x: Any, c: int) -> Any:
    """(x * c) mod 2**32 for x in [0, 2**32) without int64 overflow (split into 16-bit halves)."""
    return (((x & 0xFFFF) * c) + ((((x >> 16) * c) & 0xFFFF) << 16)) & MASK32


def hash32(x: Any) -> Any:
    """The `lowbias32` integer hash (C. Wellons, "Hash function prospector", 2018).

    Works on int64 numpy arrays and torch tensors holding values in [0, 2**32).
    """
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def kickoff_formation(n: int, half_length: float, half_width: float) -> np.ndarray:
    """Kickoff spots of a team of `n` defending the goal at -x, as float32 [n, 2].

    Slot 0 is the goalkeeper from 4 a side on; the outfield stands in lines of at most four,
    e.g. 11 a side is a 1-4-3-3.
    """
    spots = []
    outfield = n
    if n >= 4:
        spots.append((-0.88 * half_length, 0.0))
        outfield = n - 1
    n_lines = -(-outfield // 4)
    sizes = [outfield // n_lines + (1 if i < outfield % n_lines else 0) for i in range(n_lines)]
    for line, size in enumerate(sizes):
        x = -0.3 * half_length if n_lines == 1 else -0.65 * half_length + 0.45 * half_length * line / (n_lines - 1)
        for k in range(size):
            spots.append((x, 0.75 * half_width * ((2 * k + 1) / size - 1.0)))
    return np.asarray(spots, dtype=np.float32)


# ----------------------------------------------------------------------------- engine
class SoccerEngine:
    """Batched rules of the soccer game. See the module docstring for the state layout."""

    STATE_KEYS = ("x", "y", "vx", "vy", "ball_x", "ball_y", "ball_vx", "ball_vy",
                  "t", "score", "last_touch", "rng_key", "rng_counter")

    def __init__(self, config: SoccerConfig, num_envs: int = 1, backend: str = "torch", device: Any = "cpu"):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} is invalid: expected an int >= 1")
        self.config = config
        self.num_envs = num_envs
        self.ops = o = make_ops(backend, device)
        c = config
        B, N, M = num_envs, c.num_agents, c.max_team
        self.num_agents = N
        L, W = c.half_length_, c.half_width_

        # per-agent constants: each agent's mirror sign and its action -> acceleration table
        team_sign = np.array([1.0] * c.n_blue + [-1.0] * c.n_red, dtype=np.float32)
        self._sign = o.asarray(team_sign[None], o.float)  # [1, N]
        angles = (np.arange(NUM_ACTIONS) - 1) * np.pi / 4
        moves = (np.arange(NUM_ACTIONS) >= 1) & (np.arange(NUM_ACTIONS) <= 8)
        ax = np.where(moves, np.round(np.cos(angles), 7), 0.0) * c.player_accel
        ay = np.where(moves, np.round(np.sin(angles), 7), 0.0) * c.player_accel
        self._accel_x = o.asarray(ax, o.float)  # [A], in the agent's own frame
        self._accel_y = o.asarray(ay, o.float)
        self._agent_col = o.arange(N).reshape(1, N)
        spots = np.concatenate([kickoff_formation(c.n_blue, L, W), -kickoff_formation(c.n_red, L, W)])
        self._kickoff_x = o.asarray(spots[None, :, 0], o.float)
        self._kickoff_y = o.asarray(spots[None, :, 1], o.float)
        self._not_self = o.asarray(~np.eye(N, dtype=bool)[None], bool)

        # observation constants: who each agent sees as teammates (M-1) and opponents (M), in
        # slot order. A missing one (uneven teams) points at the agent itself and is multiplied
        # by 0, so it reads as zeros with present flag 0.
        blue, red = list(range(c.n_blue)), list(range(c.n_blue, N))
        other = np.full((N, 2 * M - 1), -1, dtype=np.int64)
        for i in range(N):
            mates, opps = (blue, red) if i < c.n_blue else (red, blue)
            mates = [j for j in mates if j != i]
            other[i, : len(mates)] = mates
            other[i, M - 1 : M - 1 + len(opps)] = opps
        present = (other >= 0).astype(np.float32)
        self._other_idx = o.asarray(np.where(other >= 0, other, np.arange(N)[:, None]), o.int)
        self._present = o.asarray(present[None], o.float)  # [1, N, K]
        self._other_mirror = o.asarray((present * team_sign[:, None])[None], o.float)
        ids = np.zeros((N, M + 2), dtype=np.float32)
        for i in range(N):
            ids[i, i if i < c.n_blue else i - c.n_blue] = 1.0
            ids[i, M + (0 if i < c.n_blue else 1)] = 1.0
        self._ids = o.asarray(ids[None], o.float)
        self._score_idx = o.asarray([[0, 1]] * c.n_blue + [[1, 0]] * c.n_red, o.int)
        self._obs_col = {name: sl.start for name, sl in c.obs_layout().items() if isinstance(sl, slice)}

        self.state: dict[str, Any] = {}
        self.kicking = o.zeros((B, N), bool)
        self.reset(seed=0)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _sum_axis1(x: Any) -> Any:
        """Sum over axis 1 in a fixed left-to-right order.

        torch and numpy reduce in different orders and float addition is not associative; an
        explicit order keeps both backends bit-identical. Axis 1 has at most 22 entries.
        """
        total = x[:, 0]
        for j in range(1, x.shape[1]):
            total = total + x[:, j]
        return total

    def _norm(self, dx: Any, dy: Any) -> Any:
        return self.ops.sqrt(dx * dx + dy * dy)

    def uniforms(self, count: int) -> Any:
        """`count` uniform floats in [0, 1) per match, [B, count], from each match's own stream."""
        o, s = self.ops, self.state
        base = hash32(s["rng_key"] ^ hash32(s["rng_counter"] & MASK32))
        h = hash32((base[:, None] + o.arange(count)[None, :] * 0x9E3779B9) & MASK32)
        return o.to_float(h >> 8) * (1.0 / 16777216.0)

    # ------------------------------------------------------------------ reset and kickoff
    def reset(self, seed: int) -> None:
        """Start every match afresh; match b draws its kickoffs from the stream of `seed + b`."""
        o, B, N = self.ops, self.num_envs, self.num_agents
        seeds = (o.arange(B) + (int(seed) & MASK32)) & MASK32
        zeros_bn, zeros_b = o.zeros((B, N), o.float), o.zeros((B,), o.float)
        self.state = {
            "x": zeros_bn, "y": zeros_bn, "vx": zeros_bn, "vy": zeros_bn,
            "ball_x": zeros_b, "ball_y": zeros_b, "ball_vx": zeros_b, "ball_vy": zeros_b,
            "t": o.zeros((B,), o.int),
            "score": o.zeros((B, 2), o.int),
            "last_touch": o.full((B,), -1, o.int),
            "rng_key": hash32(seeds),
            "rng_counter": o.zeros((B,), o.int),
        }
        self.kicking = o.zeros((B, N), bool)
        self._kickoff(o.full((B,), True, bool))

    def reset_where(self, mask: Any) -> None:
        """Start a new match (clock and score to zero) in the matches where `mask` [B] is set."""
        o, s = self.ops, self.state
        s["t"] = o.where(mask, 0, s["t"])
        s["score"] = o.where(mask[:, None], 0, s["score"])
        self._kickoff(mask)

    def _kickoff(self, mask: Any) -> None:
        """Players to their kickoff spots (plus jitter), ball to the centre spot, all at rest."""
        o, s, c = self.ops, self.state, self.config
        N = self.num_agents
        jitter = (self.uniforms(2 * N) * 2.0 - 1.0) * c.kickoff_jitter
        m = mask[:, None]
        s["x"] = o.where(m, self._kickoff_x + jitter[:, :N], s["x"])
        s["y"] = o.where(m, self._kickoff_y + jitter[:, N:], s["y"])
        for key in ("vx", "vy"):
            s[key] = o.where(m, 0.0, s[key])
        for key in ("ball_x", "ball_y", "ball_vx", "ball_vy"):
            s[key] = o.where(mask, 0.0, s[key])
        s["last_touch"] = o.where(mask, -1, s["last_touch"])
        s["rng_counter"] = o.where(mask, s["rng_counter"] + 1, s["rng_counter"])

    # ------------------------------------------------------------------ step
    def check_actions(self, actions: Any) -> None:
        """Raise a clear error unless `actions` is an integer array [B, N] within the action space."""
        B, N = self.num_envs, self.num_agents
        shape = tuple(actions.shape)
        if shape != (B, N):
            raise ValueError(f"actions must have shape (num_envs, num_agents) = {(B, N)}, got {shape}")
        if str(actions.dtype).replace("torch.", "") not in ("int8", "int16", "int32", "int64", "uint8"):
            raise TypeError(f"actions must be integers in [0, {NUM_ACTIONS - 1}], got dtype {actions.dtype}")
        low, high = int(actions.min()), int(actions.max())
        if low < 0 or high >= NUM_ACTIONS:
            bad = low if low < 0 else high
            raise ValueError(f"action {bad} is outside the action space: expected integers in [0, {NUM_ACTIONS - 1}]")

    def step(self, actions: Any) -> tuple[Any, dict[str, Any], Any, Any]:
        """Advance every match by one step.

        Args:
            actions: int [B, N], indices into `config.ACTION_NAMES`, in each agent's own frame.
        Returns:
            rewards [B, N] float, components {name: [B, N]} (weighted, summing to rewards),
            terminated [B] bool, truncated [B] bool.
        """
        o, c, s = self.ops, self.config, self.state
        L, W = c.half_length_, c.half_width_
        pr, br = c.player_radius, c.ball_radius
        x, y, vx, vy = s["x"], s["y"], s["vx"], s["vy"]
        bx, by, bvx, bvy = s["ball_x"][:, None], s["ball_y"][:, None], s["ball_vx"][:, None], s["ball_vy"][:, None]
        old_bx, old_by = bx, by

        # 1-2. kicks connect from the positions at the start of the step
        dx, dy = bx - x, by - y
        dist = self._norm(dx, dy)
        kicking = (actions == KICK_ACTION) & (dist <= pr + br + c.kick_reach)
        kick = o.where(kicking, c.kick_power * o.recip(o.maximum(dist, _EPS)), 0.0)
        bvx = bvx + self._sum_axis1(kick * dx)[:, None]
        bvy = bvy + self._sum_axis1(kick * dy)[:, None]
        kick_bvx, kick_bvy = bvx, bvy

        # 3. players accelerate (mirrored to the world frame), drag, top speed; everything moves
        vx = (vx + self._accel_x[actions] * self._sign) * (1.0 - c.player_drag)
        vy = (vy + self._accel_y[actions] * self._sign) * (1.0 - c.player_drag)
        speed = self._norm(vx, vy)
        cap = o.where(speed > c.player_max_speed, c.player_max_speed * o.recip(o.maximum(speed, _EPS)), 1.0)
        vx, vy = vx * cap, vy * cap
        x, y = x + vx, y + vy
        bx, by = bx + bvx, by + bvy
        bvx, bvy = bvx * (1.0 - c.ball_friction), bvy * (1.0 - c.ball_friction)

        # 4a. player-player contacts, as [B, j, i] arrays: push apart equally, and exchange the
        #     approaching normal velocity (equal masses, restitution e)
        dx, dy = x[:, None, :] - x[:, :, None], y[:, None, :] - y[:, :, None]  # i minus j
        pair_dist = self._norm(dx, dy)
        overlap = 2.0 * pr - pair_dist
        hit = (overlap > 0.0) & self._not_self
        inv = o.recip(o.maximum(pair_dist, _EPS))
        nx, ny = dx * inv, dy * inv
        rel_vn = (vx[:, None, :] - vx[:, :, None]) * nx + (vy[:, None, :] - vy[:, :, None]) * ny
        push = o.where(hit, 0.5 * overlap, 0.0)
        bounce = o.where(hit & (rel_vn < 0.0), (-0.5 * (1.0 + c.restitution)) * rel_vn, 0.0)
        x, y = x + self._sum_axis1(push * nx), y + self._sum_axis1(push * ny)
        vx, vy = vx + self._sum_axis1(bounce * nx), vy + self._sum_axis1(bounce * ny)

        # 4b. player-ball contacts: the light ball is pushed out and takes an impulse
        dx, dy = bx - x, by - y
        dist = self._norm(dx, dy)
        overlap = (pr + br) - dist
        touch = overlap > 0.0
        inv = o.recip(o.maximum(dist, _EPS))
        nx, ny = dx * inv, dy * inv
        rel_vn = (bvx - vx) * nx + (bvy - vy) * ny
        impulse = o.where(touch & (rel_vn < 0.0), (-(1.0 + c.restitution) / (1.0 / c.ball_mass + 1.0)) * rel_vn, 0.0)
        out = o.where(touch, overlap, 0.0)
        bx, by = bx + self._sum_axis1(out * nx)[:, None], by + self._sum_axis1(out * ny)[:, None]
        bvx = bvx + self._sum_axis1(impulse * nx)[:, None] * (1.0 / c.ball_mass)
        bvy = bvy + self._sum_axis1(impulse * ny)[:, None] * (1.0 / c.ball_mass)
        vx, vy = vx - impulse * nx, vy - impulse * ny
        touched = touch | kicking

        # 5. players stay on the pitch; the ball is capped and bounces off walls but not mouths
        xlim, ylim = L - pr, W - pr
        vx = o.where(o.abs(x) > xlim, 0.0, vx)
        vy = o.where(o.abs(y) > ylim, 0.0, vy)
        x, y = o.maximum(o.minimum(x, xlim), -xlim), o.maximum(o.minimum(y, ylim), -ylim)
        bx, by, bvx, bvy = bx[:, 0], by[:, 0], bvx[:, 0], bvy[:, 0]
        ball_speed = self._norm(bvx, bvy)
        cap = o.where(ball_speed > c.ball_max_speed, c.ball_max_speed * o.recip(o.maximum(ball_speed, _EPS)), 1.0)
        bvx, bvy = bvx * cap, bvy * cap
        xlim, ylim = L - br, W - br
        bvy = o.where(o.abs(by) > ylim, -c.wall_restitution * bvy, bvy)
        by = o.where(by > ylim, 2.0 * ylim - by, o.where(by < -ylim, -2.0 * ylim - by, by))
        by = o.maximum(o.minimum(by, ylim), -ylim)
        in_mouth = o.abs(by) <= c.goal_half_width_
        out_x = (o.abs(bx) > xlim) & ~in_mouth
        bvx = o.where(out_x, -c.wall_restitution * bvx, bvx)
        bx = o.where(out_x & (bx > 0.0), 2.0 * xlim - bx, o.where(out_x & (bx < 0.0), -2.0 * xlim - bx, bx))

        # 6. goals, rewards, score, clock
        blue_scored = (bx > L) & in_mouth
        red_scored = (bx < -L) & in_mouth
        sign = self._sign
        last = o.where(touched.any(1), o.argmax(touched, 1), s["last_touch"])
        is_last = o.to_float(self._agent_col == last[:, None])
        components = {
            "goal": (o.to_float(blue_scored) - o.to_float(red_scored))[:, None] * sign,
            "ball_touch": o.to_float(touched),
            "ball_progress": is_last * ((bx - old_bx[:, 0]) * (1.0 / L))[:, None] * sign,
            "shot_on_target": o.to_float(kicking & self._on_target(old_bx, old_by, kick_bvx, kick_bvy)),
            "dist_to_ball": dist * (-1.0 / L),
        }
        weights = c.reward_weights
        rewards = None
        for name in REWARD_COMPONENTS:
            components[name] = components[name] * weights[name]
            rewards = components[name] if rewards is None else rewards + components[name]

        score = s["score"] + o.to_int(o.stack([blue_scored, red_scored], 1))
        t = s["t"] + 1
        s.update(x=x, y=y, vx=vx, vy=vy, ball_x=bx, ball_y=by, ball_vx=bvx, ball_vy=bvy,
                 t=t, score=score, last_touch=last)
        self.kicking = kicking
        scored = blue_scored | red_scored
        if bool(scored.any()):
            self._kickoff(scored)
        truncated = t >= c.max_cycles
        if c.goals_to_win > 0:
            terminated = o.maximum(score[:, 0], score[:, 1]) >= c.goals_to_win
        else:
            terminated = o.zeros((self.num_envs,), bool)
        return rewards, components, terminated, truncated

    def _on_target(self, bx: Any, by: Any, bvx: Any, bvy: Any) -> Any:
        """[B, N]: would the ball, rolling straight with friction, end inside the goal each agent attacks?

        Rolling with per-step friction f covers |v| / f in total (a geometric series), so the
        ball reaches the goal line if vx / f >= L - x, and it crosses it at
        y + vy * (L - x) / vx, which must lie within the mouth. Inputs are [B, 1], world frame.
        """
        c, o, sign = self.config, self.ops, self._sign
        x, y, vx, vy = bx * sign, by * sign, bvx * sign, bvy * sign
        need = c.half_length_ - x
        return ((vx > 0.0) & (vx * (1.0 / c.ball_friction) >= need)
                & (o.abs(y * vx + vy * need) <= c.goal_half_width_ * vx))

    # ------------------------------------------------------------------ observations
    def observe(self) -> Any:
        """Egocentric, mirrored observations [B, N, obs_dim]; blocks as in `config.observation_features`.

        Written block by block into one preallocated array (no intermediate concatenation).
        """
        o, c, s = self.ops, self.config, self.state
        B, N = self.num_envs, self.num_agents
        inv_l, inv_v = 1.0 / c.half_length_, 1.0 / c.player_max_speed
        sign, col = self._sign, self._obs_col
        x, y = s["x"] * inv_l, s["y"] * inv_l
        vx, vy = s["vx"] * inv_v, s["vy"] * inv_v
        self_x, self_y = x * sign, y * sign
        ball_dx = (s["ball_x"][:, None] * inv_l - x) * sign
        ball_dy = (s["ball_y"][:, None] * inv_l - y) * sign
        ball_scale = sign * (1.0 / c.kick_power)
        reach = (c.player_radius + c.ball_radius + c.kick_reach) * inv_l
        obs = o.empty((B, N, c.obs_dim), o.float)
        obs[..., col["self_pos"]] = self_x
        obs[..., col["self_pos"] + 1] = self_y
        obs[..., col["self_vel"]] = vx * sign
        obs[..., col["self_vel"] + 1] = vy * sign
        obs[..., col["ball_rel"]] = ball_dx
        obs[..., col["ball_rel"] + 1] = ball_dy
        obs[..., col["ball_vel"]] = s["ball_vx"][:, None] * ball_scale
        obs[..., col["ball_vel"] + 1] = s["ball_vy"][:, None] * ball_scale
        obs[..., col["ball_in_reach"]] = o.to_float(self._norm(ball_dx, ball_dy) <= reach)
        # teammates then opponents as K entities of (rel x, rel y, vx, vy, present)
        start, stop = col["teammates"], col["opp_goal_rel"]
        idx, mirror = self._other_idx, self._other_mirror
        obs[..., start:stop:5] = (x[:, idx] - x[:, :, None]) * mirror
        obs[..., start + 1:stop:5] = (y[:, idx] - y[:, :, None]) * mirror
        obs[..., start + 2:stop:5] = vx[:, idx] * mirror
        obs[..., start + 3:stop:5] = vy[:, idx] * mirror
        obs[..., start + 4:stop:5] = self._present
        obs[..., col["opp_goal_rel"]] = 1.0 - self_x
        obs[..., col["opp_goal_rel"] + 1] = -self_y
        obs[..., col["own_goal_rel"]] = -1.0 - self_x
        obs[..., col["own_goal_rel"] + 1] = -self_y
        obs[..., col["time_left"]] = (1.0 - o.to_float(s["t"]) * (1.0 / c.max_cycles))[:, None]
        obs[..., col["score"] : col["score"] + 2] = (o.to_float(s["score"]) * 0.2)[:, self._score_idx]
        obs[..., col["slot"] :] = self._ids
        return obs

    def global_state(self) -> Any:
        """World-frame global state [B, state_dim] for a centralized critic: every player's
        position and velocity, ball position and velocity, time left and score (unmirrored)."""
        o, c, s = self.ops, self.config, self.state
        inv_l, inv_v, inv_k = 1.0 / c.half_length_, 1.0 / c.player_max_speed, 1.0 / c.kick_power
        return o.cat([
            s["x"] * inv_l, s["y"] * inv_l, s["vx"] * inv_v, s["vy"] * inv_v,
            o.stack([s["ball_x"] * inv_l, s["ball_y"] * inv_l, s["ball_vx"] * inv_k, s["ball_vy"] * inv_k,
                     1.0 - o.to_float(s["t"]) * (1.0 / c.max_cycles)], 1),
            o.to_float(s["score"]) * 0.2,
        ], 1)

    # ------------------------------------------------------------------ snapshots
    def get_state(self) -> dict[str, Any]:
        """A copy of the full state (RNG included) of every match."""
        return {k: self.ops.clone(v) for k, v in self.state.items()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Load a full state, e.g. one from `get_state` or a re-indexed one (see `SoccerVecEnv.branch`)."""
        missing = set(self.STATE_KEYS) - set(state)
        if missing:
            raise KeyError(f"state is missing {sorted(missing)}")
        for k in self.STATE_KEYS:
            if tuple(state[k].shape[:1]) != (self.num_envs,):
                raise ValueError(f"state[{k!r}] has {state[k].shape[0]} matches, expected num_envs={self.num_envs}")
        self.state = {k: self.ops.clone(state[k]) for k in self.STATE_KEYS}

    def frame(self, index: int = 0) -> dict[str, Any]:
        """Plain numpy snapshot of one match, for the renderer."""
        s, n = self.state, self.ops.to_numpy

        def pair(a: str, b: str) -> np.ndarray:
            return np.stack([n(s[a][index]), n(s[b][index])], -1).astype(np.float32)

        return {
            "player_pos": pair("x", "y"),
            "player_vel": pair("vx", "vy"),
            "ball_pos": pair("ball_x", "ball_y"),
            "ball_vel": pair("ball_vx", "ball_vy"),
            "score": n(s["score"][index]).astype(np.int64),
            "t": int(s["t"][index]),
            "kicking": n(self.kicking[index]).astype(bool),
        }
