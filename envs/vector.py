"""`SoccerVecEnv`: thousands of matches stepped as one batch of torch tensors, with auto-reset."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from .backend import resolve_device
from .config import NUM_ACTIONS, SoccerConfig
from .opponent import build_opponent, red_actions, reset_opponent
from .soccer import SoccerEngine


class SoccerVecEnv:
    """`num_envs` soccer matches on one device, every agent of every match at once.

    Shapes: B = `num_envs`, N = `num_agents` (blue slots then red), D = `obs_dim`.

    - `reset(seed) -> obs [B, N, D]`; match b uses the random stream of `seed + b`, so match 0
      replays exactly what `soccer_v0.parallel_env().reset(seed=seed)` plays.
    - `step(actions [B, N]) -> obs, rewards [B, N], terminated [B], truncated [B], infos`.
      A match that ends is reset within the same step; `obs` is then the new kickoff and
      `infos` keeps what ended, valid where `terminated | truncated`:
        `final_obs` [B, N, D], `episode_return` [B, N], `episode_length` [B],
        `final_score` [B, 2] (blue, red).
      Every step, `infos["reward_<component>"]` is each reward component [B, N] (weighted, summing
      to `rewards`; the flat keys of the PettingZoo env) and `infos["score"]` is the running
      score [B, 2] (blue, red).
    - `state() -> [B, state_dim]` is the global (unmirrored) state for a centralized critic.
    - `branch(src_idx, group_size)` turns the batch into `group_size` copies of each chosen match.

    `compile=True` fuses the rules with torch.compile (see `SoccerEngine`): faster on big batches
    after a one-off build (shorter from torch's cache; figures: docs/benchmarks.md), but no
    longer bit-identical to the PettingZoo env. `check_actions=False` skips the per-step range check of the actions.

    `cpu_threads` (default None: never touched) is an opt-in that caps torch's process-wide CPU
    thread count while a step runs the rules, restoring the caller's count after each step: an
    int n >= 1 caps at n, "auto" at one thread per 65536 elements of the [2, N, B] player arrays
    (uncapped when compiled), where a thread team's fork/join stops costing more than it gains.
    Torch work in other Python threads sees the cap during a step. The trainer and `bench env`
    build their envs with "auto" (see `SoccerEngine`).

    `opponent` (default None: both teams are agents) plays red inside the env: a bot by name
    (`"random"`, `"chaser"`, `"team"`, weakened by `opponent_strength` in [0, 1]) or an object with
    `act(red_obs [B, n_red, D]) -> int64 [B, n_red]` (a checkpoint: `marl_grpo.agents.load_policy_opponent`).
    Then N = n_blue: `agents`, the spaces, obs, rewards and the per-player infos are blue's, `step`
    takes blue's actions [B, n_blue], and `reset(seed=s)` seeds the opponent with s (auto-resets do
    not touch it). `state()` and `player_positions()` keep every player; `branch` is refused. See
    `marl_grpo.envs.opponent` for the protocol and the seeding.

    Keyword arguments other than those below are `SoccerConfig` fields; a misspelt one raises.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 20, "name": "soccer_vec_v0"}

    def __init__(self, num_envs: int = 1024, device: Any = "auto", render_mode: str | None = None,
                 check_actions: bool = True, compile: bool = False, cpu_threads: int | str | None = None,
                 opponent: Any = None, opponent_strength: float = 1.0, **kwargs: Any):
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode={render_mode!r} is invalid: expected None, 'rgb_array' or 'human'")
        self.config = SoccerConfig.from_kwargs(**kwargs)
        self.device = resolve_device(device)
        self.engine = SoccerEngine(self.config, num_envs, backend="torch", device=self.device, compile=compile,
                                   cpu_threads=cpu_threads)
        self.num_envs = num_envs
        self.opponent = build_opponent(opponent, opponent_strength, self.config, self.device)
        self._n_blue = self.config.n_blue
        # with an opponent only blue's players are agents; the engine still plays all of them
        self.num_agents = self.config.num_agents if self.opponent is None else self._n_blue
        self.agents = self.config.agents[:self.num_agents]
        self._obs: torch.Tensor | None = None
        self.render_mode = render_mode
        self.check_actions = check_actions
        D = self.config.obs_dim
        self.single_observation_space = spaces.Box(*self.config.observation_bounds(), (D,), np.float32)
        self.single_action_space = spaces.Discrete(NUM_ACTIONS)
        self.observation_space = spaces.Box(
            *(np.broadcast_to(bound, (num_envs, self.num_agents, D)) for bound in self.config.observation_bounds()),
            (num_envs, self.num_agents, D), np.float32)
        # the global state of `state()`: one match [state_dim], the batch [num_envs, state_dim]
        self.single_state_space = spaces.Box(*self.config.state_bounds(), (self.config.state_dim,), np.float32)
        self.state_space = spaces.Box(
            *(np.broadcast_to(bound, (num_envs, self.config.state_dim)) for bound in self.config.state_bounds()),
            (num_envs, self.config.state_dim), np.float32)
        self.action_space = spaces.MultiDiscrete(np.full((num_envs, self.num_agents), NUM_ACTIONS))
        self._episode_return = torch.zeros(num_envs, self.config.num_agents, device=self.device)
        self._renderer = None

    @property
    def obs_dim(self) -> int:
        return self.config.obs_dim

    # the rest of the trainer's env contract (`marl_grpo.envs.team.TeamVecEnv`)
    @property
    def num_actions(self) -> int:
        return NUM_ACTIONS

    @property
    def state_dim(self) -> int:
        return self.config.state_dim

    @property
    def max_steps(self) -> int:
        return self.config.max_cycles

    @property
    def teams(self) -> tuple[int, ...]:
        """the team of each agent: 0 blue, 1 red"""
        return tuple(int(i >= self._n_blue) for i in range(self.num_agents))

    @property
    def can_branch(self) -> bool:
        return self.opponent is None

    def reset_blocks(self, seed: int, group_size: int) -> torch.Tensor:
        """Reset every match, block k (matches k*G ... k*G + G - 1) all from match k*G's kickoff (seed + k*G)."""
        self.reset(seed)
        return self.branch(torch.arange(0, self.num_envs, group_size), group_size)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        if seed is None:
            seed = int(np.random.SeedSequence().entropy) & 0xFFFFFFFF
        self.engine.reset(seed)
        self._episode_return = torch.zeros_like(self._episode_return)
        if self.opponent is not None:
            reset_opponent(self.opponent, seed)
        return self._agents_obs(self.engine.observe())

    def _agents_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """The agents' rows of every player's obs [B, N, D]; with an opponent, kept for red's next move."""
        if self.opponent is None:
            return obs
        self._obs = obs
        return obs[:, :self._n_blue]

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        actions = torch.as_tensor(actions, device=self.device)
        if self.opponent is not None:
            if tuple(actions.shape) != (self.num_envs, self._n_blue):
                raise ValueError(f"actions must have shape (num_envs, n_blue) = {(self.num_envs, self._n_blue)} "
                                 f"(red is played by opponent={self.opponent!r}), got {tuple(actions.shape)}")
            if self._obs is None:
                raise RuntimeError("call reset() before step(): the opponent acts on the observations of a reset")
            red = red_actions(self.opponent, self._obs[:, self._n_blue:], self.check_actions)
            actions = torch.cat([actions, red.to(actions.dtype)], 1)
        if self.check_actions:
            self.engine.check_actions(actions)
        rewards, components, terminated, truncated = self.engine.step(actions)
        # out of place, so that tensors handed out in infos are never changed afterwards
        self._episode_return = self._episode_return + rewards
        obs = self.engine.observe()
        score = self.engine.state["score"]
        infos: dict[str, Any] = {f"reward_{name}": value for name, value in components.items()}
        infos.update({
            "score": score,
            "final_obs": obs,
            "final_score": score,
            "episode_return": self._episode_return,
            "episode_length": self.engine.state["t"],
        })
        done = terminated | truncated
        if bool(done.any()):
            obs = self.reset_where(done)
            infos["score"] = self.engine.state["score"]
        elif self.opponent is not None:
            obs = self._agents_obs(obs)
        if self.opponent is not None:
            nb = self._n_blue
            rewards = rewards[:, :nb]
            infos.update({key: value[:, :nb] for key, value in infos.items()
                          if key.startswith("reward_") or key in ("final_obs", "episode_return")})
        if self.render_mode == "human":
            self.render()
        return obs, rewards, terminated, truncated, infos

    def reset_where(self, mask: torch.Tensor) -> torch.Tensor:
        """Start new matches where `mask` [B] is set (on their current random streams, as the auto-reset
        does) and zero their running episode return; returns the obs [B, N, D] of the whole batch."""
        self.engine.reset_where(mask)
        self._episode_return = torch.where(mask[:, None], 0.0, self._episode_return)
        return self._agents_obs(self.engine.observe())

    def state(self) -> torch.Tensor:
        return self.engine.global_state()

    def score(self) -> torch.Tensor:
        """The running score of every match, int64 [B, 2] (blue, red): a copy, which later steps
        do not change."""
        return self.engine.state["score"].clone()

    def steps_in_match(self) -> torch.Tensor:
        """The steps played in every current match, int64 [B] (0 at kickoff; the match is truncated
        at `max_cycles`): a copy."""
        return self.engine.state["t"].clone()

    def player_positions(self) -> torch.Tensor:
        """Every player's position on the pitch, float32 [B, N, 2] (x, y; blue slots then red), in
        the global frame: blue attacks +x whatever the observations' mirroring. A copy."""
        return torch.stack([self.engine.state["x"].T, self.engine.state["y"].T], -1)

    def branch(self, src_idx: Any, group_size: int) -> torch.Tensor:
        """Fill the batch with `group_size` copies of each match in `src_idx`; returns the new obs.

        Afterwards slots `i*group_size ... i*group_size + group_size - 1` hold copies of match
        `src_idx[i]`: positions, velocities, clock, score, last touch, the random stream and the
        running episode return. This is what GRPO rollout groups are made of.
        """
        if self.opponent is not None:
            raise ValueError(f"branch() needs red driven from outside (opponent=None), not opponent={self.opponent!r}: "
                             "an in-env opponent's random stream and memory span the whole batch, not one match")
        src = torch.as_tensor(src_idx, device=self.device).reshape(-1)
        if src.dtype.is_floating_point or src.dtype == torch.bool:
            raise TypeError(f"src_idx must hold integer match indices, got dtype {src.dtype}")
        if isinstance(group_size, (bool, np.bool_)) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
            raise ValueError(f"group_size={group_size!r} is invalid: expected an int >= 1")
        if src.numel() * group_size != self.num_envs:
            raise ValueError(
                f"len(src_idx) * group_size must equal num_envs={self.num_envs}, "
                f"got {src.numel()} * {group_size} = {src.numel() * group_size}"
            )
        if src.numel() and (int(src.min()) < 0 or int(src.max()) >= self.num_envs):
            raise ValueError(f"src_idx must lie in [0, {self.num_envs - 1}], got {src.tolist()}")
        index = src.long().repeat_interleave(int(group_size))
        self.engine.take(index)
        self._episode_return = self._episode_return[index]
        return self.engine.observe()

    def get_state(self) -> dict[str, torch.Tensor]:
        """A snapshot of every match (restore it with `set_state`); an in-env opponent's random
        stream is not in it (save `env.opponent.state_dict()` beside it, where the opponent has one)."""
        snapshot = self.engine.get_state()
        snapshot["episode_return"] = self._episode_return.clone()
        return snapshot

    def set_state(self, snapshot: dict[str, torch.Tensor]) -> torch.Tensor:
        self.engine.set_state(snapshot)
        if "episode_return" in snapshot:
            self._episode_return = snapshot["episode_return"].clone()
        return self._agents_obs(self.engine.observe())

    def render(self, index: int = 0) -> np.ndarray | None:
        """Draw match `index` (an RGB array for `rgb_array`, a window for `human`)."""
        if self.render_mode is None:
            raise ValueError("render() needs render_mode='rgb_array' or 'human' at construction")
        if self._renderer is None:
            from .render import SoccerRenderer

            self._renderer = SoccerRenderer(self.config, render_mode=self.render_mode, fps=self.metadata["render_fps"])
        return self._renderer.render(self.engine.frame(index))

    def poll_events(self) -> list[str]:
        """Window events since the last call ("quit", "pause", "restart"); [] before the first render."""
        return self._renderer.poll_events() if self._renderer is not None else []

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def as_gymnasium(self) -> "SoccerGymVectorEnv":  # noqa: F821  (imported below: no import cycle)
        """This batch as a standard `gymnasium.vector.VectorEnv` with one sub-env per player.

        `num_envs = B * N` (sub-env `b * N + i` is player `i` of match `b`, SuperSuit's layout),
        numpy in and out on the CPU, `terminations` / `truncations` per player, gymnasium vector infos
        (`reward_<component>`, `score_for`, `score_against`; `final_obs` / `final_info` on ended
        sub-envs) and `metadata["autoreset_mode"] = AutoresetMode.SAME_STEP`, so gymnasium's vector
        wrappers such as `RecordEpisodeStatistics` work on it. It wraps this env: both views step
        the same matches. See `marl_grpo.envs.gym_vector` for every difference from the native API.
        With an `opponent`, N is blue's team size: only blue's players are sub-envs.
        """
        from .gym_vector import SoccerGymVectorEnv

        return SoccerGymVectorEnv(self)
