"""`SoccerGymVectorEnv`: a `SoccerVecEnv` seen as a standard `gymnasium.vector.VectorEnv`.

Build it with `SoccerVecEnv(...).as_gymnasium()` (or `SoccerGymVectorEnv(vec_env)`); it holds the
wrapped env, so both views step the same matches. With an in-env opponent
(`SoccerVecEnv(..., opponent="team")`, `marl_grpo.envs.opponent`) N is blue's team size: only blue's
players are sub-envs, and `score_for` / `score_against` are blue's.

Where the native `SoccerVecEnv` differs from gymnasium's vector conventions, and what this changes:

============================  ===========================================  ==========================================
                              native `SoccerVecEnv`                        `as_gymnasium()`
============================  ===========================================  ==========================================
sub-environments              `num_envs` = B matches of N players          `num_envs` = B * N, one per player,
                                                                           match-major: match b, player i -> b*N + i
                                                                           (SuperSuit's `pettingzoo_env_to_vec_env_v1`)
arrays                        torch tensors on the env's device            numpy on the CPU (moved off a GPU)
`reset`                       `reset(seed) -> obs [B, N, D]`               `reset(*, seed, options) -> (obs [B*N, D]
                                                                           float32, infos)`
`step` actions                int [B, N] (tensor)                          int [B*N] (numpy array, list or tensor)
rewards                       float32 [B, N]                               float32 [B*N]
terminated / truncated        bool [B], one per match                      bool [B*N]: each player gets its match's
`single_observation_space`    one player's observation                     the same Box (taken from the wrapped env)
`observation_space`           Box [B, N, D]                                `batch_space(single, B*N)`: Box [B*N, D]
`action_space`                MultiDiscrete [B, N]                         `batch_space(Discrete(10), B*N)`:
                                                                           MultiDiscrete [B*N]
infos                         tensors: `reward_<component>` [B, N],        gymnasium vector infos (dict of arrays
                              `score` [B, 2] (blue, red), and on ended     [B*N] with boolean `_key` masks, the
                              matches `final_obs` [B, N, D],               layout of `VectorEnv._add_info`), see below
                              `final_score`, `episode_return` [B, N],
                              `episode_length` [B]
autoreset                     same step (obs of an ended match is the      the same, declared as
                              new kickoff), undeclared                     `metadata["autoreset_mode"] = SAME_STEP`
seeds                         match b uses the stream of `seed + b`        the same: `reset(seed=s)` replays
                                                                           `SoccerVecEnv.reset(seed=s)`; sub-envs
                                                                           b*N ... b*N+N-1 share match b's stream
`render`                      `render(index)`: one match                   `render()`: tuple of `num_envs` frames (a
                                                                           match's frame repeated for its players),
                                                                           `render_match(index)`: one match
============================  ===========================================  ==========================================

Infos, exactly as `gymnasium.vector.SyncVectorEnv` lays them out in `AutoresetMode.SAME_STEP`
(gymnasium 1.x): every step and at reset each sub-env has the flat keys of the PettingZoo env
(`marl_grpo.envs.INFO_KEYS`): `reward_<component>` (float32, weighted, summing to the reward) and
`score_for` / `score_against` (int64: goals of the sub-env's own team, goals of the other team),
each with an all-True `_key` mask; zeros at reset. On a sub-env whose match ended this step (as in
`SyncVectorEnv`, which replaces the step's infos of an ended sub-env by its reset infos):

- the top-level keys hold the new match's reset infos (reward components 0, score 0 - 0);
- `final_obs` is an object array [B*N] holding the last observation [D] of each ended sub-env
  (None elsewhere), with the mask `_final_obs`;
- `final_info` is a nested dict of the ended step's own infos (`reward_<component>`, and the final
  `score_for` / `score_against`), each an array [B*N] with its own `_key` mask, and `_final_info`
  marks the ended sub-envs.

The native `episode_return` / `episode_length` are not passed on: wrap with
`gymnasium.wrappers.vector.RecordEpisodeStatistics`, which sums the rewards per sub-env (it reads
the autoreset mode from the metadata) and so records each player's return and the match length.

Not matched: a list of per-sub-env seeds (players of one match share one random stream, so a list is
accepted only when it is exactly what an int seed means), a seed together with a partial reset
(`options["reset_mask"]` restarts the chosen matches on their current streams), and reset masks
that split a match.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .config import NUM_ACTIONS, REWARD_COMPONENTS

__all__ = ["SoccerGymVectorEnv"]


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    """A numpy copy of `x` on the CPU (never a view of a tensor the env might reuse)."""
    x = x.detach()
    if x.device.type == "cpu":
        return x.numpy().copy()
    return x.cpu().numpy()


class SoccerGymVectorEnv(VectorEnv):
    """B soccer matches of N players as `num_envs = B * N` gymnasium sub-envs, one per player.

    Sub-env `b * N + i` is player `i` (`env.agents[i]`: blue slots then red) of match `b`. See the
    module docstring for the layout of observations, rewards, terminations and infos.

    Attributes:
        env: the wrapped `SoccerVecEnv` (stepping either view steps the same matches).
        num_matches: B. num_agents: N. num_envs: B * N.
    """

    def __init__(self, env: Any):
        # `env` is a `SoccerVecEnv`; it is not imported here, because `SoccerVecEnv.as_gymnasium`
        # imports this module and the modules of the project import one another one way only
        self.env = env
        self.num_matches = int(env.num_envs)
        self.num_agents = int(env.num_agents)
        self.num_envs = self.num_matches * self.num_agents
        self.agents = list(env.agents)
        # a copy, so that the wrapped env's (class-level) metadata is left alone, as SyncVectorEnv does
        self.metadata = {**env.metadata, "autoreset_mode": AutoresetMode.SAME_STEP}
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        n_blue = env.config.n_blue
        # team of each sub-env's player: 0 blue, 1 red
        team = (np.arange(self.num_agents) >= n_blue).astype(np.int64)
        self._team = np.tile(team, self.num_matches)

    # ------------------------------------------------------------------ properties
    @property
    def render_mode(self) -> str | None:  # type: ignore[override]
        return self.env.render_mode

    @property
    def device(self) -> torch.device:
        return self.env.device

    # ------------------------------------------------------------------ helpers
    def _per_player(self, x: torch.Tensor) -> np.ndarray:
        """[B] or [B, N] (or [B, N, ...]) tensor -> numpy [B*N, ...], match-major."""
        a = _to_numpy(x)
        if a.ndim == 1:
            a = np.repeat(a, self.num_agents)
        else:
            a = a.reshape(self.num_envs, *a.shape[2:])
        return a

    def _score_for_against(self, score: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        s = np.repeat(_to_numpy(score).astype(np.int64), self.num_agents, axis=0)  # [B*N, 2]
        rows = np.arange(self.num_envs)
        return s[rows, self._team], s[rows, 1 - self._team]

    def _zero_infos(self, mask: np.ndarray) -> dict[str, Any]:
        infos: dict[str, Any] = {}
        for name in REWARD_COMPONENTS:
            infos[f"reward_{name}"] = np.zeros(self.num_envs, dtype=np.float32)
            infos[f"_reward_{name}"] = mask.copy()
        for key in ("score_for", "score_against"):
            infos[key] = np.zeros(self.num_envs, dtype=np.int64)
            infos[f"_{key}"] = mask.copy()
        return infos

    def _check_seed(self, seed: Any) -> int | None:
        N, B = self.num_agents, self.num_matches
        allowed = (f"expected an int >= 0 or None (match b, i.e. sub-envs b*{N} ... b*{N}+{N - 1}, uses the "
                   f"random stream of seed + b), or a list of {self.num_envs} per-sub-env seeds of the form "
                   f"[s]*{N} + [s+1]*{N} + ... + [s+{B - 1}]*{N}")
        if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_))):
            return None if seed is None else int(seed)
        if isinstance(seed, (Sequence, np.ndarray)) and not isinstance(seed, str):
            seeds = list(seed)
            if len(seeds) == self.num_envs and all(s is None for s in seeds):
                return None
            if (len(seeds) == self.num_envs and all(
                    isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)) for s in seeds)):
                first = int(seeds[0])
                if all(int(s) == first + k // N for k, s in enumerate(seeds)):
                    return first
            raise ValueError(f"seed={seed!r} is invalid: {allowed}")
        raise TypeError(f"seed={seed!r} is invalid: {allowed}")

    def _check_actions(self, actions: Any) -> np.ndarray:
        if isinstance(actions, torch.Tensor):
            actions = _to_numpy(actions)
        a = np.asarray(actions)
        if a.shape != (self.num_envs,):
            raise ValueError(
                f"actions must have shape (num_envs,) = ({self.num_envs},) (one per player, sub-env b*{self.num_agents}"
                f" + i = player i of match b), got shape {a.shape}")
        if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"actions must be integers in [0, {NUM_ACTIONS - 1}], got dtype {a.dtype}")
        bad = np.flatnonzero((a < 0) | (a >= NUM_ACTIONS))
        if bad.size:
            k = int(bad[0])
            raise ValueError(
                f"action {int(a[k])} of sub-env {k} (match {k // self.num_agents}, player "
                f"{self.agents[k % self.num_agents]!r}) is outside the action space: expected integers in "
                f"[0, {NUM_ACTIONS - 1}]")
        return a.astype(np.int64, copy=False)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every match; returns obs float32 [num_envs, D] and zero infos (all keys, all masks True).

        `seed=s` replays `SoccerVecEnv.reset(seed=s)`. `options={"reset_mask": bool [num_envs]}`
        restarts only the matches whose players are masked (a mask must cover whole matches; no
        seed then: those matches continue their random streams); infos then cover the masked
        sub-envs only, as in `SyncVectorEnv`.
        """
        seed = self._check_seed(seed)
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
        options = options or {}
        unknown = sorted(set(options) - {"reset_mask"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}: the only option is 'reset_mask'")
        if "reset_mask" in options:
            mask = options["reset_mask"]
            if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (self.num_envs,):
                raise ValueError(f"options['reset_mask'] must be a bool numpy array of shape ({self.num_envs},), "
                                 f"got {mask!r}")
            per_match = mask.reshape(self.num_matches, self.num_agents)
            if not (per_match == per_match[:, :1]).all():
                raise ValueError("options['reset_mask'] must set all or none of the players of each match "
                                 f"(sub-envs b*{self.num_agents} ... b*{self.num_agents}+{self.num_agents - 1}): "
                                 "a match restarts as a whole")
            if not mask.any():
                raise ValueError("options['reset_mask'] must hold at least one True value")
            if seed is not None:
                raise ValueError("a seed cannot be combined with options['reset_mask']: a partial reset restarts "
                                 "the masked matches on their current random streams")
            obs = self.env.reset_where(torch.as_tensor(per_match[:, 0].copy(), device=self.env.device))
            return _to_numpy(obs).reshape(self.num_envs, -1), self._zero_infos(mask)
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        obs = self.env.reset(seed=seed)
        return _to_numpy(obs).reshape(self.num_envs, -1), self._zero_infos(np.ones(self.num_envs, dtype=bool))

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every player: actions int [num_envs] -> obs, rewards, terminations, truncations, infos.

        Ended matches are reset within the step (obs is the new kickoff); their last observation and
        infos are in `infos["final_obs"]` / `infos["final_info"]` (see the module docstring).
        """
        a = self._check_actions(actions)
        B, N = self.num_matches, self.num_agents
        acts = torch.as_tensor(a.reshape(B, N), device=self.env.device)
        obs_t, rewards_t, terminated_t, truncated_t, native = self.env.step(acts)

        obs = _to_numpy(obs_t).reshape(self.num_envs, -1)
        rewards = self._per_player(rewards_t).astype(np.float32, copy=False)
        terminations = self._per_player(terminated_t).astype(bool, copy=False)
        truncations = self._per_player(truncated_t).astype(bool, copy=False)
        done = terminations | truncations
        all_set = np.ones(self.num_envs, dtype=bool)

        components = {f"reward_{name}": self._per_player(native[f"reward_{name}"]).astype(np.float32, copy=False)
                      for name in REWARD_COMPONENTS}
        # native "score" is already the new match's (0 - 0) where a match ended, as reset infos are
        score_for, score_against = self._score_for_against(native["score"])

        infos: dict[str, Any] = {}
        if done.any():
            final_obs_all = self._per_player(native["final_obs"])
            final_obs = np.full(self.num_envs, None, dtype=object)
            for k in np.flatnonzero(done):
                final_obs[k] = final_obs_all[k]
            final_for, final_against = self._score_for_against(native["final_score"])
            final_info: dict[str, Any] = {}
            step_values = {**components, "score_for": final_for, "score_against": final_against}
            for key, value in step_values.items():
                final_info[key] = np.where(done, value, np.zeros((), dtype=value.dtype))
                final_info[f"_{key}"] = done.copy()
            infos.update({"final_obs": final_obs, "_final_obs": done.copy(),
                          "final_info": final_info, "_final_info": done.copy()})
        for key, value in components.items():
            # an ended sub-env shows its reset infos (zeros) at the top level, as in SyncVectorEnv
            infos[key] = np.where(done, np.float32(0.0), value) if done.any() else value
            infos[f"_{key}"] = all_set.copy()
        infos["score_for"], infos["_score_for"] = score_for, all_set.copy()
        infos["score_against"], infos["_score_against"] = score_against, all_set.copy()
        return obs, rewards, terminations, truncations, infos

    def render(self) -> tuple[np.ndarray | None, ...] | None:
        """One frame per sub-env, as `VectorEnv.render` (each match drawn once, its frame repeated for its
        N players), so gymnasium's vector `HumanRendering` / `RecordVideo` work. With
        `render_mode="human"` only match 0 is drawn to the window and None is returned. Drawing every
        match is slow for large batches: use `render_match(index)` for one."""
        if self.render_mode == "human":
            self.env.render(0)
            return None
        frames: list[np.ndarray | None] = []
        for b in range(self.num_matches):
            frames.extend([self.env.render(b)] * self.num_agents)
        return tuple(frames)

    def render_match(self, index: int = 0) -> np.ndarray | None:
        """The wrapped env's `render(index)`: match `index` (sub-envs index*N ... index*N+N-1)."""
        return self.env.render(index)

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_envs={self.num_envs}: {self.num_matches} matches x "
                f"{self.num_agents} players)")
