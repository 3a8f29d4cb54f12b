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
numpy arrays (`backend="numpy"`: the PettingZoo env with one match), through `backend.py`; one
match of up to 8 players runs `_physics` as scalar code generated from it (`scalar.py`).
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

import warnings
from typing import Any

import numpy as np

from .backend import make_ops
from .config import KICK_ACTION, NUM_ACTIONS, REWARD_COMPONENTS, SoccerConfig

MASK32 = 0xFFFFFFFF
_EPS = 1e-6
# Elements of the [2, N, B] player arrays per CPU thread under `cpu_threads="auto"`. torch splits
# an elementwise op over its threads from a fixed size on, and for the eager rules' many small ops
# the fork/join of a thread team can cost more than the op itself on a few cores: a second thread
# pays only from about this many elements each.
_ELEMENTS_PER_THREAD = 65536
# One match on the numpy backend (the PettingZoo env) steps through straight-line scalar code
# generated from `_physics` (see `scalar.py`) up to this many players: a scalar op costs a small
# fraction of a numpy call (docs/benchmarks.md), but the pairs grow as N^2, and from 5v5 on (~2800
# scalar ops a step) the ~150 array calls are as fast.
_SCALAR_MAX_AGENTS = 8


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
                 compile: bool = False, cpu_threads: int | str | None = None):
        """`compile=True` (torch only) fuses the step and the observation's feature rows with
        `torch.compile` (the observation's matrix product stays BLAS's): faster on big batches
        after a one-off build, but then no longer bit-identical to the numpy backend (the compiler
        may contract a * b + c into fused multiply-adds).

        `cpu_threads` (torch on the CPU only; an opt-in) caps torch's CPU thread count while
        `step` and `observe` run the rules, and puts the caller's count back after each call:
        None (the default) never touches it; an int n >= 1 runs them on at most n threads;
        "auto" on one thread per `_ELEMENTS_PER_THREAD` elements of the [2, N, B] player arrays
        (the eager rules' small ops lose to a team's fork/join below that), and uncapped once
        compiled. The count is process-wide: torch work in other Python threads sees the cap
        while a step runs, so leave it None when other threads run torch ops."""
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} is invalid: expected an int >= 1")
        if not (cpu_threads is None or cpu_threads == "auto" or (
                isinstance(cpu_threads, int) and not isinstance(cpu_threads, bool) and cpu_threads >= 1)):
            raise ValueError(f"cpu_threads={cpu_threads!r} is invalid: expected None, 'auto' or an int >= 1")
        self.cpu_threads = cpu_threads
        self.config = config
        self.num_envs = num_envs
        self.ops = o = make_ops(backend, device)
        c = config
        N, M = c.num_agents, c.max_team
        self.num_agents = N
        # resolved geometry and weights, read once (the config's properties recompute them)
        self.half_length = L = c.resolved_half_length
        self.half_width = W = c.resolved_half_width
        self.goal_half_width = c.resolved_goal_half_width
        self._weights = [(name, c.reward_weights[name]) for name in REWARD_COMPONENTS]

        # per-agent constants: each agent's mirror sign and the action -> acceleration table
        team_sign = np.array([1.0] * c.n_blue + [-1.0] * c.n_red, dtype=np.float32)
        self._sign = o.asarray(team_sign[:, None], o.float)  # [N, 1]
        self._is_kick = o.asarray(np.arange(NUM_ACTIONS) == KICK_ACTION, o.float)
        self._agent_row = o.arange(N).reshape(N, 1)
        self._blue_col, self._red_col = o.asarray([[1.0, 0.0]], o.float), o.asarray([[0.0, 1.0]], o.float)
        self._rank = o.asarray(np.arange(N, 0, -1, dtype=np.float32)[:, None], o.float)  # N - i
        spots = np.concatenate([kickoff_formation(c.n_blue, L, W), -kickoff_formation(c.n_red, L, W)])
        self._kickoff_x = o.asarray(spots[:, :1], o.float)
        self._kickoff_y = o.asarray(spots[:, 1:], o.float)
        # x and y (and vx, vy) are stepped together as [2, N, B] arrays: one op for both axes
        self._accel = o.asarray(np.concatenate([self._np_accel(c, np.cos), self._np_accel(c, np.sin)]), o.float)
        self._accel_offset = o.asarray(np.array([0, NUM_ACTIONS]).reshape(2, 1, 1), o.int)
        self._player_lim = o.asarray(np.array([L - c.player_radius, W - c.player_radius]).reshape(2, 1, 1), o.float)
        self._neg_player_lim = -self._player_lim
        self._team = o.asarray(np.where(team_sign > 0, 0, 1), o.int)  # [N]: 0 blue, 1 red
        self._team_sign = o.asarray(np.array([[1.0], [-1.0]]), o.float)  # [2, 1]: blue's, red's
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
        # slot order. A missing one (uneven teams) points at the agent itself with weight 0, so it
        # reads as zeros with present flag 0.
        blue, red = list(range(c.n_blue)), list(range(c.n_blue, N))
        other = np.full((N, 2 * M - 1), -1, dtype=np.int64)
        for i in range(N):
            mates, opps = (blue, red) if i < c.n_blue else (red, blue)
            mates = [j for j in mates if j != i]
            other[i, : len(mates)] = mates
            other[i, M - 1 : M - 1 + len(opps)] = opps
        present = (other >= 0).astype(np.float32)
        other = np.where(other >= 0, other, np.arange(N)[:, None])
        ids = np.zeros((N, M + 2), dtype=np.float32)
        for i in range(N):
            ids[i, i if i < c.n_blue else i - c.n_blue] = 1.0
            ids[i, M + (0 if i < c.n_blue else 1)] = 1.0
        matrix = self._observation_matrix(team_sign, other, present, ids)
        self._obs_matrix = o.asarray(matrix, o.float)
        self._obs_scale = o.asarray(np.array([1.0 / L] * (2 * N) + [1.0 / c.player_max_speed] * (2 * N) + [1.0 / L] * 2,
                                             dtype=np.float32)[:, None], o.float)
        self._ones = o.asarray(np.ones((1, num_envs)), o.float)

        self._physics_fn, self._observe_fn = self._physics, self._observe
        self._compiled = self._compile_failed = False
        if backend == "numpy" and num_envs == 1 and N <= _SCALAR_MAX_AGENTS:
            from .scalar import scalar_observe, scalar_physics

            self._physics_fn, self._observe_fn = scalar_physics(self), scalar_observe(self)
        if compile:
            if backend != "torch":
                raise ValueError("compile=True needs backend='torch'")
            import torch

            # these two graphs build in this process (an option of theirs alone, not inductor's
            # global setting): the compile worker processes torch would start otherwise stay alive
            # after the build and can take cores from the run on a small machine
            options = {"compile_threads": 1}
            o.numpy_sqrt, self._compiled = False, True
            self._physics_fn = self._eager_on_failure(
                torch.compile(self._physics, dynamic=False, options=options), self._physics)
            self._observe_fn = self._eager_on_failure(
                torch.compile(self._observe, dynamic=False, options=options), self._observe)
        self._threads = self._thread_cap()

        self.state: dict[str, Any] = {}
        self.kicking = o.zeros((N, num_envs), o.float)
        self.reset(seed=0)

    def _thread_cap(self) -> int | None:
        """The most CPU threads the rules run on, from `cpu_threads` (None: torch's count, untouched)."""
        if self.cpu_threads != "auto":
            return self.cpu_threads
        if self._compiled and not self._compile_failed:
            return None  # the fused kernels use every thread well
        return max(1, 2 * self.num_agents * self.num_envs // _ELEMENTS_PER_THREAD)

    def _eager_on_failure(self, compiled: Any, eager: Any) -> Any:
        """`compiled`, but if a build fails (no C++ compiler, an inductor error) warn and run the
        eager rules from then on, as the compiled bots do."""
        def call(*args: Any) -> Any:
            if not self._compile_failed:
                try:
                    return compiled(*args)
                except Exception as err:
                    warnings.warn(f"SoccerEngine: torch.compile failed ({type(err).__name__}: {err}); the rules "
                                  "run eagerly", RuntimeWarning, stacklevel=4)
                    self._compile_failed, self.ops.numpy_sqrt = True, True
                    self._threads = self._thread_cap()
            return eager(*args)

        return call

    # ------------------------------------------------------------------ helpers
    def _pair_sum(self, delta: Any) -> Any:
        """[K, N, B]: for each player, +delta [K, P, B] of the pairs where it is i and -delta where
        it is j (K quantities at once).

        A gather and a fixed-order sum rather than a scatter-add: identical on both backends,
        and torch's index_add_ was pathologically slow with 2 threads here.
        """
        N = self.num_agents
        terms = self.ops.rows(delta, self._pair_members, 1).reshape(delta.shape[0], N, N - 1, -1)
        terms *= self._pair_signs  # in place (a fresh array): saves an allocation per op
        if N == 2:
            return terms[:, :, 0]
        total = terms[:, :, 0] + terms[:, :, 1]
        for k in range(2, N - 1):
            total += terms[:, :, k]
        return total

    @staticmethod
    def _sum_axis1(x: Any) -> Any:
        """Sum over axis 1 (the agents, e.g. [2, N, B] -> [2, B]) in a fixed left-to-right order.

        torch and numpy reduce in different orders and float addition is not associative; an
        explicit order keeps both backends bit-identical. There are at most 22 agents.
        """
        total = x[:, 0] + x[:, 1]  # a fresh array (N >= 2), then summed into in place
        for j in range(2, x.shape[1]):
            total += x[:, j]
        return total

    def _norm(self, d: Any) -> Any:
        """Length of the vectors d [2, ...] (x then y): sqrt(dx * dx + dy * dy)."""
        sq = d * d
        return self.ops.sqrt(sq[0] + sq[1])

    @staticmethod
    def _np_accel(c: SoccerConfig, trig: Any) -> np.ndarray:
        """Per action, the acceleration along one axis (cos: x, sin: y) in the agent's own frame."""
        angles = (np.arange(NUM_ACTIONS) - 1) * np.pi / 4
        moves = (np.arange(NUM_ACTIONS) >= 1) & (np.arange(NUM_ACTIONS) <= 8)
        return (np.where(moves, np.round(trig(angles), 7), 0.0) * c.player_accel).astype(np.float32)

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
        aminmax = getattr(actions, "aminmax", None)  # torch: one pass and one sync for both
        low, high = (int(v) for v in aminmax()) if aminmax is not None else (int(actions.min()), int(actions.max()))
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
        with self.ops.limit_threads(self._threads):
            return self._step(actions)

    def _step(self, actions: Any) -> tuple[Any, dict[str, Any], Any, Any]:
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
        pos, sign, total = o.positive, self._sign, self._sum_axis1
        old_bx, old_by = bx, by
        # x and y side by side: players [2, N, B], the ball [2, B]; every op below then does what
        # the same op did on x and on y alone, element for element
        p, v = o.stack([x, y], 0), o.stack([vx, vy], 0)
        ball, bv = o.stack([bx, by], 0), o.stack([bvx, bvy], 0)

        # 1-2. kicks connect from the positions at the start of the step
        d = ball[:, None] - p
        dist = self._norm(d)
        kicking = o.take(self._is_kick, a) * pos((pr + br + c.kick_reach) - dist)
        kick = kicking * (c.kick_power * o.recip(o.maximum(dist, _EPS)))
        bv = bv + total(kick * d)
        kick_bvx, kick_bvy = bv[0], bv[1]

        # 3. players accelerate (mirrored to the world frame), drag, top speed; everything moves
        v = (v + o.take(self._accel, a + self._accel_offset) * sign) * (1.0 - c.player_drag)
        cap = o.minimum(c.player_max_speed * o.recip(o.maximum(self._norm(v), _EPS)), 1.0)
        v = v * cap
        p = p + v
        ball = ball + bv
        bv = bv * (1.0 - c.ball_friction)

        # 4a. player-player contacts, over the P = N(N-1)/2 pairs (i, j) as [P, B] arrays: push
        #     apart equally and exchange the approaching normal velocity (equal masses,
        #     restitution e); i receives +delta and j -delta, summed in a fixed order.
        #     Positions and velocities go together as [4, N, B] = (x, y, vx, vy).
        pv = o.cat([p, v], 0)
        diff = o.rows(pv, self._pair_i, 1)  # [4, P, B]
        diff -= o.rows(pv, self._pair_j, 1)
        pair_dist = self._norm(diff[:2])
        overlap = o.maximum((2.0 * pr) - pair_dist, 0.0)
        inv = o.recip(o.maximum(pair_dist, _EPS))
        n = diff[:2] * inv
        rel = diff[2:] * n
        rel_vn = rel[0] + rel[1]
        push = 0.5 * overlap
        bounce = ((-0.5 * (1.0 + c.restitution)) * o.minimum(rel_vn, 0.0)) * pos(overlap)
        # (push nx, push ny, bounce nx, bounce ny) [4, P, B]
        delta = (o.stack([push, bounce], 0)[:, None] * n[None]).reshape(4, n.shape[1], -1)
        pv = pv + self._pair_sum(delta)
        p, v = pv[:2], pv[2:]

        # 4b. player-ball contacts: the light ball is pushed out and takes an impulse
        d = ball[:, None] - p
        dist = self._norm(d)
        overlap = o.maximum((pr + br) - dist, 0.0)
        touch = pos(overlap)
        inv = o.recip(o.maximum(dist, _EPS))
        n = d * inv
        rel = (bv[:, None] - v) * n
        rel_vn = rel[0] + rel[1]
        impulse = ((-(1.0 + c.restitution) / (1.0 / c.ball_mass + 1.0)) * o.minimum(rel_vn, 0.0)) * touch
        ball = ball + total(overlap * n)
        push = impulse * n
        bv = bv + total(push) * (1.0 / c.ball_mass)
        v = v - push
        touched = o.maximum(touch, kicking)

        # 5. players stay on the pitch (losing their speed into the wall); the ball is capped
        #    and bounces off the walls, except through the goal mouths
        v = v * (1.0 - pos(o.abs(p) - self._player_lim))
        p = o.clip(p, self._neg_player_lim, self._player_lim)
        cap = o.minimum(c.ball_max_speed * o.recip(o.maximum(self._norm(bv), _EPS)), 1.0)
        bv = bv * cap
        bx, by, bvx, bvy = ball[0], ball[1], bv[0], bv[1]
        xlim, ylim = L - br, W - br
        over = o.maximum(o.abs(by) - ylim, 0.0)
        bvy = bvy * (1.0 - (1.0 + c.wall_restitution) * pos(over))
        by = o.clip(by - 2.0 * o.sign(by) * over, -ylim, ylim)
        in_mouth = 1.0 - pos(o.abs(by) - self.goal_half_width)
        over = o.maximum(o.abs(bx) - xlim, 0.0) * (1.0 - in_mouth)
        bvx = bvx * (1.0 - (1.0 + c.wall_restitution) * pos(over))
        bx = bx - 2.0 * o.sign(bx) * over
        x, y, vx, vy = p[0], p[1], v[0], v[1]

        # 6. goals, rewards, score, clock
        blue_scored = pos(bx - L) * in_mouth  # [B], 0 or 1
        red_scored = pos(-L - bx) * in_mouth
        # the lowest-index toucher becomes the last toucher: max over agents of touched * (N - i)
        first = o.amax(touched * self._rank, 0)
        last = o.where(first > 0.0, self.num_agents - o.to_int(first), last_touch)
        is_last = o.to_float(self._agent_row == last[None, :])
        components = {
            "goal": (blue_scored - red_scored) * sign,
            "ball_touch": touched,
            "ball_progress": is_last * ((bx - old_bx) * (1.0 / L)) * sign,
            "shot_on_target": kicking * o.rows(self._on_target(old_bx, old_by, kick_bvx, kick_bvy), self._team),
            "dist_to_ball": dist * (-1.0 / L),
        }
        rewards = None
        for name, weight in self._weights:
            components[name] = components[name] * weight
            rewards = components[name] if rewards is None else rewards + components[name]
        goals = blue_scored[:, None] * self._blue_col + red_scored[:, None] * self._red_col  # [B, 2]
        return (x, y, vx, vy, bx, by, bvx, bvy, last, kicking), rewards, components, goals

    def _on_target(self, bx: Any, by: Any, bvx: Any, bvy: Any) -> Any:
        """[2, B] 0/1: would the ball, rolling straight with friction, end inside the goal blue (row 0)
        and red (row 1) attack?

        Rolling with per-step friction f covers |v| / f in total (a geometric series), so the
        ball reaches the goal line if vx / f >= L - x, and it crosses it at
        y + vy * (L - x) / vx, which must lie within the mouth. Inputs are [B], world frame.
        """
        c, o, sign, pos = self.config, self.ops, self._team_sign, self.ops.positive
        x, y, vx, vy = bx * sign, by * sign, bvx * sign, bvy * sign
        need = self.half_length - x
        return (pos(vx) * (1.0 - pos(need - vx * (1.0 / c.ball_friction)))
                * (1.0 - pos(o.abs(y * vx + vy * need) - self.goal_half_width * vx)))

    # ------------------------------------------------------------------ observations
    def observe(self) -> Any:
        """Egocentric, mirrored observations [B, N, obs_dim]; blocks as in `config.observation_features`.

        Every observation entry is a fixed linear function of a few per-match quantities F
        [Q, B] (normalised positions and velocities, the ball, who can kick, clock, score, 1)
        with at most two nonzero weights, each +-1 (or one weight alone, like the ball velocity's
        +-1 / kick_power). So the whole observation is one matrix product F.T @ A [B, N * D]: a
        sum of two exactly signed terms is rounded once in any summation order, so this is bit
        for bit what the per-entry formulas give, in one op instead of some sixty.
        """
        s, o = self.state, self.ops
        with o.limit_threads(self._threads):
            features = self._observe_fn(s["x"], s["y"], s["vx"], s["vy"], s["ball_x"], s["ball_y"],
                                        s["ball_vx"], s["ball_vy"], s["t"], s["score"])
        # the product on all threads: unlike the elementwise ops, BLAS gains from them here
        obs = o.matmul(o.permute(features, 1, 0), self._obs_matrix, o.matmul_is_exact())
        return obs.reshape(obs.shape[0], self.num_agents, -1)

    def _observe(self, x: Any, y: Any, vx: Any, vy: Any, bx: Any, by: Any, bvx: Any, bvy: Any,
                 t: Any, score: Any) -> Any:
        """The rows F [Q, B] of `observe` (see `_observation_matrix`)."""
        o, c, N = self.ops, self.config, self.num_agents
        # rows of F: x, y, vx, vy of each player and the ball position, normalised ...
        scaled = o.cat([x, y, vx, vy, bx[None], by[None]], 0) * self._obs_scale
        # ... whether each player can reach the ball with a kick (the norm is mirror-free) ...
        d = scaled[4 * N:][:, None] - scaled[: 2 * N].reshape(2, N, -1)
        reach = (c.player_radius + c.ball_radius + c.kick_reach) * (1.0 / self.half_length)
        in_reach = o.positive(reach - self._norm(d))
        # ... and the ball velocity, the time left, the score (0.2 per goal) and a row of ones
        time_left = 1.0 - o.to_float(t) * (1.0 / c.max_cycles)
        goals = o.permute(o.to_float(score) * 0.2, 1, 0)
        return o.cat([scaled, bvx[None], bvy[None], in_reach, time_left[None], goals, self._ones], 0)

    def _observation_matrix(self, team_sign: np.ndarray, other: np.ndarray, present: np.ndarray,
                            ids: np.ndarray) -> np.ndarray:
        """A [Q, N * D] with obs[b] = F[:, b] @ A (see `observe`), float32.

        The rows of F: x, y, vx, vy of the N players, ball x and y (all normalised), ball vx, vy
        (raw), the N in-reach flags, time left, blue's and red's score, 1.
        """
        c, N, M = self.config, self.num_agents, self.config.max_team
        D = c.obs_dim
        X, Y, VX, VY = 0, N, 2 * N, 3 * N
        BX, BY, BVX, BVY, REACH = 4 * N, 4 * N + 1, 4 * N + 2, 4 * N + 3, 4 * N + 4
        TIME, GOALS, ONE = 5 * N + 4, 5 * N + 5, 5 * N + 7
        A = np.zeros((5 * N + 8, N, D), dtype=np.float32)
        ball_scale = np.float32(1.0 / c.kick_power)  # as float32(1 / kick_power) times the sign
        for i in range(N):
            s = team_sign[i]
            col = A[:, i]  # [Q, D], a view
            col[X + i, 0] = col[Y + i, 1] = col[VX + i, 2] = col[VY + i, 3] = s  # own pos, vel
            col[BX, 4], col[X + i, 4] = s, -s  # ball relative position: (ball - self) * sign
            col[BY, 5], col[Y + i, 5] = s, -s
            col[BVX, 6] = col[BVY, 7] = s * ball_scale
            col[REACH + i, 8] = 1.0
            k0 = 9
            for k in range(2 * M - 1):  # teammates, opponents: (other - self) * mirror, vel * mirror, present
                j, m = other[i, k], present[i, k] * s
                col[X + j, k0] += m
                col[X + i, k0] -= m
                col[Y + j, k0 + 1] += m
                col[Y + i, k0 + 1] -= m
                col[VX + j, k0 + 2] += m
                col[VY + j, k0 + 3] += m
                col[ONE, k0 + 4] = present[i, k]
                k0 += 5
            col[ONE, k0], col[X + i, k0] = 1.0, -s  # opponent goal: 1 - self_x, -self_y
            col[Y + i, k0 + 1] = -s
            col[ONE, k0 + 2], col[X + i, k0 + 2] = -1.0, -s  # own goal: -1 - self_x, -self_y
            col[Y + i, k0 + 3] = -s
            col[TIME, k0 + 4] = 1.0
            own = 0 if i < c.n_blue else 1
            col[GOALS + own, k0 + 5] = col[GOALS + 1 - own, k0 + 6] = 1.0  # own goals, opponent goals
            col[ONE, k0 + 7 : k0 + 7 + M + 2] = ids[i]
            assert k0 + 7 + M + 2 == D
        # at most two nonzero weights per entry, as `observe` relies on
        assert int((A != 0).sum(0).max()) <= 2
        return A.reshape(5 * N + 8, N * D)

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
