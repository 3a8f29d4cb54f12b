"""The batched soccer engine: the one source of truth for the rules.

`SoccerEngine` advances `num_envs` matches at once. Its public inputs and outputs are match
first (`actions [B, N]`, `observe() -> [B, N, D]`), but the state is stored agent first with x
and y apart (structure of arrays, the match index innermost). Every hot-path op is then a plain
contiguous elementwise op over thousands of matches, which is what makes them cheap; on the CPU
it also avoids comparisons and `where`, which are several times slower than float arithmetic.

    x, y, vx, vy          [N, B]  players (blue slots first, then red), world frame
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

    AGENT_KEYS = ("x", "y", "vx", "vy")
    STATE_KEYS = AGENT_KEYS + ("ball_x", "ball_y", "ball_vx", "ball_vy", "t", "score", "last_touch",
                               "rng_key", "rng_counter")

    def __init__(self, config: SoccerConfig, num_envs: int = 1, backend: str = "torch", device: Any = "cpu",
                 compile: bool = False):
        """`compile=True` (torch only) fuses the step and the observation with `torch.compile`:
        several times faster on big batches after a one-off compilation of tens of seconds,
        but then no longer bit-identical to the numpy backend (the compiler may contract
        a * b + c into fused multiply-adds)."""
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} is invalid: expected an int >= 1")
        self.config = config
        self.num_envs = num_envs
        self.ops = o = make_ops(backend, device)
        c = config
        N, M = c.num_agents, c.max_team
        self.num_agents = N
        # resolved geometry and weights, read once (the config's properties recompute them)
        self.half_length = L = c.half_length_
        self.half_width = W = c.half_width_
        self.goal_half_width = c.goal_half_width_
        self._weights = [(name, c.reward_weights[name]) for name in REWARD_COMPONENTS]

        # per-agent constants: each agent's mirror sign and the action -> acceleration table
        team_sign = np.array([1.0] * c.n_blue + [-1.0] * c.n_red, dtype=np.float32)
        self._sign = o.asarray(team_sign[:, None], o.float)  # [N, 1]
        self._is_blue = o.asarray((team_sign > 0)[:, None], o.float)
        angles = (np.arange(NUM_ACTIONS) - 1) * np.pi / 4
        moves = (np.arange(NUM_ACTIONS) >= 1) & (np.arange(NUM_ACTIONS) <= 8)
        self._accel_x = o.asarray(np.where(moves, np.round(np.cos(angles), 7), 0.0) * c.player_accel, o.float)
        self._accel_y = o.asarray(np.where(moves, np.round(np.sin(angles), 7), 0.0) * c.player_accel, o.float)
        self._is_kick = o.asarray(np.arange(NUM_ACTIONS) == KICK_ACTION, o.float)
        self._agent_row = o.arange(N).reshape(N, 1)
        self._blue_col, self._red_col = o.asarray([[1.0, 0.0]], o.float), o.asarray([[0.0, 1.0]], o.float)
        self._rank = o.asarray(np.arange(N, 0, -1, dtype=np.float32)[:, None], o.float)  # N - i
        spots = np.concatenate([kickoff_formation(c.n_blue, L, W), -kickoff_formation(c.n_red, L, W)])
        self._kickoff_x = o.asarray(spots[:, :1], o.float)
        self._kickoff_y = o.asarray(spots[:, 1:], o.float)
        pair_i, pair_j = np.triu_indices(N, 1)  # every unordered pair of players once
        self._pair_i, self._pair_j = o.asarray(pair_i, o.int), o.asarray(pair_j, o.int)
        # each player's pairs, [N, N-1]: first those where it is i (+delta), then where it is j
        # (-delta), each in pair order; `_pair_sum` adds them up left to right
        members = [[p for p in range(len(pair_i)) if pair_i[p] == k] + [p for p in range(len(pair_i)) if pair_j[p] == k]
                   for k in range(N)]
        signs = [[1.0 if pair_i[p] == k else -1.0 for p in row] for k, row in enumerate(members)]
        self._pair_members = o.asarray(np.asarray(members, dtype=np.int64).reshape(-1), o.int)
        self._pair_signs = o.asarray(np.asarray(signs, dtype=np.float32)[:, :, None], o.float)

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
        B = num_envs
        self._present = [o.asarray(np.repeat(present[:, k : k + 1], B, 1), o.float) for k in range(2 * M - 1)]
        self._other_mirror = o.asarray((present * team_sign[:, None])[:, :, None], o.float)  # [N, K, 1]
        ids = np.zeros((N, M + 2), dtype=np.float32)
        for i in range(N):
            ids[i, i if i < c.n_blue else i - c.n_blue] = 1.0
            ids[i, M + (0 if i < c.n_blue else 1)] = 1.0
        self._ids = [o.asarray(np.repeat(ids[:, k : k + 1], B, 1), o.float) for k in range(M + 2)]
        self._ones = o.asarray(np.ones((N, B)), o.float)

        self._physics_fn, self._observe_fn = self._physics, self._observe
        if compile:
            if backend != "torch":
                raise ValueError("compile=True needs backend='torch'")
            import torch
            import torch._inductor.config as inductor_config

            # compile in this process: a pool of idle compile workers would keep spinning OpenMP
            # threads (see marl_grpo/__init__.py) and slow everything after it
            inductor_config.compile_threads = 1
            self._physics_fn = torch.compile(self._physics, dynamic=False)
            self._observe_fn = torch.compile(self._observe, dynamic=False)

        self.state: dict[str, Any] = {}
        self.kicking = o.zeros((N, num_envs), o.float)
        self.reset(seed=0)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _sum_agents(x: Any) -> Any:
        """Sum over the leading (agent) axis in a fixed left-to-right order.

        torch and numpy reduce in different orders and float addition is not associative; an
        explicit order keeps both backends bit-identical. There are at most 22 agents.
        """
        total = x[0]
        for j in range(1, x.shape[0]):
            total = total + x[j]
        return total

    def _pair_sum(self, delta: Any) -> Any:
        """[N, B]: for each player, +delta [P, B] of the pairs where it is i and -delta where it is j.

        A gather and a fixed-order sum rather than a scatter-add: identical on both backends,
        and torch's index_add_ was pathologically slow with 2 threads here.
        """
        N = self.num_agents
        terms = self.ops.rows(delta, self._pair_members).reshape(N, N - 1, -1) * self._pair_signs
        return self._sum_agents(self.ops.permute(terms, 1, 0, 2))

    def _norm(self, dx: Any, dy: Any) -> Any:
        return self.ops.sqrt(dx * dx + dy * dy)

    def _uniforms(self, key: Any, counter: Any, count: int) -> Any:
        """`count` uniform floats in [0, 1) per match, [R, count], from the streams (key, counter) [R]."""
        base = hash32(key ^ hash32(counter & MASK32))
        h = hash32((base[:, None] + self.ops.arange(count)[None, :] * 0x9E3779B9) & MASK32)
        return self.ops.to_float(h >> 8) * (1.0 / 16777216.0)

    # ------------------------------------------------------------------ reset and kickoff
    def reset(self, seed: int) -> None:
        """Start every match afresh; match b draws its kickoffs from the stream of `seed + b`."""
        o, B, N = self.ops, self.num_envs, self.num_agents
        seeds = (o.arange(B) + (int(seed) & MASK32)) & MASK32
        self.state = {
            **{key: o.zeros((N, B), o.float) for key in self.AGENT_KEYS},
            **{key: o.zeros((B,), o.float) for key in ("ball_x", "ball_y", "ball_vx", "ball_vy")},
            "t": o.zeros((B,), o.int),
            "score": o.zeros((B, 2), o.int),
            "last_touch": o.full((B,), -1, o.int),
            "rng_key": hash32(seeds),
            "rng_counter": o.zeros((B,), o.int),
        }
        self.kicking = o.zeros((N, B), o.float)
        self._kickoff(o.full((B,), True, bool))

    def reset_where(self, mask: Any) -> None:
        """Start a new match (clock and score to zero) in the matches where `mask` [B] is set."""
        o, s = self.ops, self.state
        s["t"] = o.where(mask, 0, s["t"])
        s["score"] = o.where(mask[:, None], 0, s["score"])
        self._kickoff(mask)

    def _kickoff(self, mask: Any) -> None:
        """Players to their kickoff spots (plus jitter), ball to the centre spot, all at rest.

        Only the matches in `mask` [B] are touched (their rows are gathered, so a goal in one of
        4096 matches costs little); arrays are replaced, never changed in place.
        """
        o, s, c = self.ops, self.state, self.config
        N = self.num_agents
        rows = o.nonzero(mask)
        if rows.shape[0] == 0:
            return
        counter = s["rng_counter"][rows]
        jitter = ((self._uniforms(s["rng_key"][rows], counter, 2 * N) * 2.0 - 1.0) * c.kickoff_jitter).T
        updates = {"x": self._kickoff_x + jitter[:N], "y": self._kickoff_y + jitter[N:], "vx": 0.0, "vy": 0.0}
        for key, value in updates.items():
            s[key] = o.clone(s[key])
            s[key][:, rows] = value
        for key, value in (("ball_x", 0.0), ("ball_y", 0.0), ("ball_vx", 0.0), ("ball_vy", 0.0),
                           ("last_touch", -1), ("rng_counter", counter + 1)):
            s[key] = o.clone(s[key])
            s[key][rows] = value

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
        a = o.to_int(actions).T  # [N, B]; int64, as torch indexing needs
        moved, rewards, components, goals = self._physics_fn(
            a, s["x"], s["y"], s["vx"], s["vy"], s["ball_x"], s["ball_y"], s["ball_vx"], s["ball_vy"], s["last_touch"])
        x, y, vx, vy, bx, by, bvx, bvy, last, kicking = moved
        score = s["score"] + o.to_int(goals)
        t = s["t"] + 1
        s.update(x=x, y=y, vx=vx, vy=vy, ball_x=bx, ball_y=by, ball_vx=bvx, ball_vy=bvy,
                 t=t, score=score, last_touch=last)
        self.kicking = kicking
        scored = (goals[:, 0] + goals[:, 1]) > 0.0
        if bool(scored.any()):
            self._kickoff(scored)
        truncated = t >= c.max_cycles
        if c.goals_to_win > 0:
            terminated = o.maximum(score[:, 0], score[:, 1]) >= c.goals_to_win
        else:
            terminated = o.zeros((self.num_envs,), bool)
        return o.contiguous(rewards.T), {k: v.T for k, v in components.items()}, terminated, truncated

    def _physics(self, a: Any, x: Any, y: Any, vx: Any, vy: Any, bx: Any, by: Any, bvx: Any, bvy: Any,
                 last_touch: Any) -> tuple[tuple, Any, dict[str, Any], Any]:
        """One step of motion, contacts, walls, goals and rewards, with no data-dependent control
        flow (so torch.compile can fuse it). Players are [N, B], the ball [B], `a` int [N, B].

        Returns the moved state (x, y, vx, vy, ball x, y, vx, vy, last_touch, kicking), rewards
        [N, B], the weighted components {name: [N, B]} and goals [B, 2] (blue, red) as 0/1 floats.
        """
        o, c = self.ops, self.config
        L, W = self.half_length, self.half_width
        pr, br = c.player_radius, c.ball_radius
        pos, sign, total = o.positive, self._sign, self._sum_agents
        old_bx, old_by = bx, by

        # 1-2. kicks connect from the positions at the start of the step
        dx, dy = bx - x, by - y
        dist = self._norm(dx, dy)
        kicking = o.take(self._is_kick, a) * pos((pr + br + c.kick_reach) - dist)
        kick = kicking * (c.kick_power * o.recip(o.maximum(dist, _EPS)))
        bvx, bvy = bvx + total(kick * dx), bvy + total(kick * dy)
        kick_bvx, kick_bvy = bvx, bvy

        # 3. players accelerate (mirrored to the world frame), drag, top speed; everything moves
        vx = (vx + o.take(self._accel_x, a) * sign) * (1.0 - c.player_drag)
        vy = (vy + o.take(self._accel_y, a) * sign) * (1.0 - c.player_drag)
        cap = o.minimum(c.player_max_speed * o.recip(o.maximum(self._norm(vx, vy), _EPS)), 1.0)
        vx, vy = vx * cap, vy * cap
        x, y = x + vx, y + vy
        bx, by = bx + bvx, by + bvy
        bvx, bvy = bvx * (1.0 - c.ball_friction), bvy * (1.0 - c.ball_friction)

        # 4a. player-player contacts, over the P = N(N-1)/2 pairs (i, j) as [P, B] arrays: push
        #     apart equally and exchange the approaching normal velocity (equal masses,
        #     restitution e); i receives +delta and j -delta, summed in a fixed order
        pi, pj, rows = self._pair_i, self._pair_j, o.rows
        dx, dy = rows(x, pi) - rows(x, pj), rows(y, pi) - rows(y, pj)
        pair_dist = self._norm(dx, dy)
        overlap = o.maximum((2.0 * pr) - pair_dist, 0.0)
        inv = o.recip(o.maximum(pair_dist, _EPS))
        nx, ny = dx * inv, dy * inv
        rel_vn = (rows(vx, pi) - rows(vx, pj)) * nx + (rows(vy, pi) - rows(vy, pj)) * ny
        push = 0.5 * overlap
        bounce = ((-0.5 * (1.0 + c.restitution)) * o.minimum(rel_vn, 0.0)) * pos(overlap)
        x, y = x + self._pair_sum(push * nx), y + self._pair_sum(push * ny)
        vx, vy = vx + self._pair_sum(bounce * nx), vy + self._pair_sum(bounce * ny)

        # 4b. player-ball contacts: the light ball is pushed out and takes an impulse
        dx, dy = bx - x, by - y
        dist = self._norm(dx, dy)
        overlap = o.maximum((pr + br) - dist, 0.0)
        touch = pos(overlap)
        inv = o.recip(o.maximum(dist, _EPS))
        nx, ny = dx * inv, dy * inv
        rel_vn = (bvx - vx) * nx + (bvy - vy) * ny
        impulse = ((-(1.0 + c.restitution) / (1.0 / c.ball_mass + 1.0)) * o.minimum(rel_vn, 0.0)) * touch
        bx, by = bx + total(overlap * nx), by + total(overlap * ny)
        bvx = bvx + total(impulse * nx) * (1.0 / c.ball_mass)
        bvy = bvy + total(impulse * ny) * (1.0 / c.ball_mass)
        vx, vy = vx - impulse * nx, vy - impulse * ny
        touched = o.maximum(touch, kicking)

        # 5. players stay on the pitch (losing their speed into the wall); the ball is capped
        #    and bounces off the walls, except through the goal mouths
        xlim, ylim = L - pr, W - pr
        vx, vy = vx * (1.0 - pos(o.abs(x) - xlim)), vy * (1.0 - pos(o.abs(y) - ylim))
        x, y = o.clip(x, -xlim, xlim), o.clip(y, -ylim, ylim)
        cap = o.minimum(c.ball_max_speed * o.recip(o.maximum(self._norm(bvx, bvy), _EPS)), 1.0)
        bvx, bvy = bvx * cap, bvy * cap
        xlim, ylim = L - br, W - br
        over = o.maximum(o.abs(by) - ylim, 0.0)
        bvy = bvy * (1.0 - (1.0 + c.wall_restitution) * pos(over))
        by = o.clip(by - 2.0 * o.sign(by) * over, -ylim, ylim)
        in_mouth = 1.0 - pos(o.abs(by) - self.goal_half_width)
        over = o.maximum(o.abs(bx) - xlim, 0.0) * (1.0 - in_mouth)
        bvx = bvx * (1.0 - (1.0 + c.wall_restitution) * pos(over))
        bx = bx - 2.0 * o.sign(bx) * over

        # 6. goals, rewards, score, clock
        blue_scored = pos(bx - L) * in_mouth  # [B], 0 or 1
        red_scored = pos(-L - bx) * in_mouth
        # the lowest-index toucher becomes the last toucher: max over agents of touched * (N - i)
        first = touched[0] * self._rank[0]
        for j in range(1, self.num_agents):
            first = o.maximum(first, touched[j] * self._rank[j])
        last = o.where(first > 0.0, self.num_agents - o.to_int(first), last_touch)
        is_last = o.to_float(self._agent_row == last[None, :])
        components = {
            "goal": (blue_scored - red_scored) * sign,
            "ball_touch": touched,
            "ball_progress": is_last * ((bx - old_bx) * (1.0 / L)) * sign,
            "shot_on_target": kicking * self._on_target(old_bx, old_by, kick_bvx, kick_bvy),
            "dist_to_ball": dist * (-1.0 / L),
        }
        rewards = None
        for name, weight in self._weights:
            components[name] = components[name] * weight
            rewards = components[name] if rewards is None else rewards + components[name]
        goals = blue_scored[:, None] * self._blue_col + red_scored[:, None] * self._red_col  # [B, 2]
        return (x, y, vx, vy, bx, by, bvx, bvy, last, kicking), rewards, components, goals

    def _on_target(self, bx: Any, by: Any, bvx: Any, bvy: Any) -> Any:
        """[N, B] 0/1: would the ball, rolling straight with friction, end inside the goal each agent attacks?

        Rolling with per-step friction f covers |v| / f in total (a geometric series), so the
        ball reaches the goal line if vx / f >= L - x, and it crosses it at
        y + vy * (L - x) / vx, which must lie within the mouth. Inputs are [B], world frame.
        """
        c, o, sign, pos = self.config, self.ops, self._sign, self.ops.positive
        x, y, vx, vy = bx * sign, by * sign, bvx * sign, bvy * sign
        need = self.half_length - x
        return (pos(vx) * (1.0 - pos(need - vx * (1.0 / c.ball_friction)))
                * (1.0 - pos(o.abs(y * vx + vy * need) - self.goal_half_width * vx)))

    # ------------------------------------------------------------------ observations
    def observe(self) -> Any:
        """Egocentric, mirrored observations [B, N, obs_dim]; blocks as in `config.observation_features`.

        Built feature-major ([obs_dim, N, B], one contiguous row per feature) and transposed
        once at the end.
        """
        s = self.state
        return self._observe_fn(s["x"], s["y"], s["vx"], s["vy"], s["ball_x"], s["ball_y"],
                                s["ball_vx"], s["ball_vy"], s["t"], s["score"])

    def _observe(self, x: Any, y: Any, vx: Any, vy: Any, bx: Any, by: Any, bvx: Any, bvy: Any,
                 t: Any, score: Any) -> Any:
        o, c = self.ops, self.config
        inv_l, inv_v = 1.0 / self.half_length, 1.0 / c.player_max_speed
        sign = self._sign
        x, y = x * inv_l, y * inv_l
        vx, vy = vx * inv_v, vy * inv_v
        self_x, self_y = x * sign, y * sign
        ball_dx = (bx * inv_l - x) * sign
        ball_dy = (by * inv_l - y) * sign
        ball_scale = sign * (1.0 / c.kick_power)
        reach = (c.player_radius + c.ball_radius + c.kick_reach) * inv_l
        rows = [self_x, self_y, vx * sign, vy * sign, ball_dx, ball_dy,
                bvx * ball_scale, bvy * ball_scale,
                o.positive(reach - self._norm(ball_dx, ball_dy))]
        # teammates then opponents: K entities of (rel x, rel y, vx, vy, present), each [N, K, B]
        idx, mirror = self._other_idx, self._other_mirror
        ex = (x[idx] - x[:, None]) * mirror
        ey = (y[idx] - y[:, None]) * mirror
        evx, evy = vx[idx] * mirror, vy[idx] * mirror
        for k, present in enumerate(self._present):
            rows += [ex[:, k], ey[:, k], evx[:, k], evy[:, k], present]
        score = o.to_float(score) * 0.2
        own = score[:, 0] * self._is_blue + score[:, 1] * (1.0 - self._is_blue)
        opp = score[:, 1] * self._is_blue + score[:, 0] * (1.0 - self._is_blue)
        time_left = 1.0 - o.to_float(t) * (1.0 / c.max_cycles)
        rows += [1.0 - self_x, -self_y, -1.0 - self_x, -self_y, self._ones * time_left, own, opp]
        rows += self._ids
        return o.contiguous(o.permute(o.stack(rows, 0), 2, 1, 0))

    def global_state(self) -> Any:
        """World-frame global state [B, state_dim] for a centralized critic: every player's
        position and velocity, ball position and velocity, time left and score (unmirrored)."""
        o, c, s = self.ops, self.config, self.state
        inv_l, inv_v, inv_k = 1.0 / self.half_length, 1.0 / c.player_max_speed, 1.0 / c.kick_power
        return o.cat([
            s["x"].T * inv_l, s["y"].T * inv_l, s["vx"].T * inv_v, s["vy"].T * inv_v,
            o.stack([s["ball_x"] * inv_l, s["ball_y"] * inv_l, s["ball_vx"] * inv_k, s["ball_vy"] * inv_k,
                     1.0 - o.to_float(s["t"]) * (1.0 / c.max_cycles)], 1),
            o.to_float(s["score"]) * 0.2,
        ], 1)

    # ------------------------------------------------------------------ snapshots
    def get_state(self) -> dict[str, Any]:
        """A copy of the full state (RNG included) of every match, in the layout above."""
        return {k: self.ops.clone(v) for k, v in self.state.items()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Load a full state, e.g. one from `get_state`."""
        missing = set(self.STATE_KEYS) - set(state)
        if missing:
            raise KeyError(f"state is missing {sorted(missing)}")
        for k in self.STATE_KEYS:
            matches = state[k].shape[1] if k in self.AGENT_KEYS else state[k].shape[0]
            if matches != self.num_envs:
                raise ValueError(f"state[{k!r}] holds {matches} matches, expected num_envs={self.num_envs}")
        self.state = {k: self.ops.clone(state[k]) for k in self.STATE_KEYS}

    def take(self, index: Any) -> None:
        """Re-index the matches: match b becomes a copy of old match `index[b]` (len(index) == B)."""
        if tuple(index.shape) != (self.num_envs,):
            raise ValueError(f"index must have shape ({self.num_envs},), got {tuple(index.shape)}")
        self.state = {k: (v[:, index] if k in self.AGENT_KEYS else v[index]) for k, v in self.state.items()}
        self.kicking = self.kicking[:, index]

    def frame(self, index: int = 0) -> dict[str, Any]:
        """Plain numpy snapshot of one match, for the renderer."""
        s, n = self.state, self.ops.to_numpy

        def pair(a: str, b: str) -> np.ndarray:
            return np.stack([n(s[a][..., index]), n(s[b][..., index])], -1).astype(np.float32)

        return {
            "player_pos": pair("x", "y"),
            "player_vel": pair("vx", "vy"),
            "ball_pos": pair("ball_x", "ball_y"),
            "ball_vel": pair("ball_vx", "ball_vy"),
            "score": n(s["score"][index]).astype(np.int64),
            "t": int(s["t"][index]),
            "kicking": n(self.kicking[:, index]) > 0,
        }
