"""The soccer game as a PettingZoo `ParallelEnv` (one match, numpy backend of the same engine)."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import EzPickle
from pettingzoo import ParallelEnv

from .config import ACTION_NAMES, INFO_KEYS, NUM_ACTIONS, REWARD_COMPONENTS, SoccerConfig
from .opponent import build_opponent, red_actions, reset_opponent
from .soccer import MASK32, SoccerEngine


class parallel_env(ParallelEnv, EzPickle):  # noqa: N801 (PettingZoo naming convention)
    """Simultaneous-move soccer; see `marl_grpo.envs.soccer_v0` for the full documentation."""

    metadata = {
        "render_modes": ["human", "rgb_array"],
        "name": "soccer_v0",
        "is_parallelizable": True,
        "render_fps": 20,
    }

    def __init__(self, render_mode: str | None = None, opponent: Any = None, opponent_strength: float = 1.0,
                 **kwargs: Any):
        EzPickle.__init__(self, render_mode=render_mode, opponent=opponent, opponent_strength=opponent_strength,
                          **kwargs)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode={render_mode!r} is invalid: expected None, 'human' or 'rgb_array'")
        self.config = SoccerConfig.from_kwargs(**kwargs)
        self.render_mode = render_mode
        self.engine = SoccerEngine(self.config, num_envs=1, backend="numpy")
        # with an opponent the env plays red itself and only blue's players are agents
        self.opponent = build_opponent(opponent, opponent_strength, self.config)
        n_agents = self.config.num_agents if self.opponent is None else self.config.n_blue
        self.possible_agents = self.config.agents[:n_agents]
        self._red_obs: torch.Tensor | None = None
        self.agents: list[str] = []
        self._index = {agent: i for i, agent in enumerate(self.possible_agents)}
        D = self.config.obs_dim
        self._observation_spaces = {a: spaces.Box(*self.config.observation_bounds(), (D,), np.float32) for a in self.possible_agents}
        self._action_spaces = {a: spaces.Discrete(NUM_ACTIONS) for a in self.possible_agents}
        self.state_space = spaces.Box(*self.config.state_bounds(), (self.config.state_dim,), np.float32)
        self._seeded = False
        self._renderer = None

    # Spaces are built once, so the same object comes back on every call (PettingZoo's api_test checks).
    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_spaces[self._check_agent(agent)]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_spaces[self._check_agent(agent)]

    def _check_agent(self, agent: str) -> str:
        if agent not in self._index:
            raise KeyError(f"unknown agent {agent!r}; the agents are {self.possible_agents}")
        return agent

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is None and not self._seeded:
            seed = int(np.random.SeedSequence().entropy) & MASK32
        if seed is not None:
            self.engine.reset(seed)
            self._seeded = True
        else:  # a new match on the same random stream
            self.engine.reset_where(np.ones(1, dtype=bool))
        if self.opponent is not None:
            reset_opponent(self.opponent, seed)
        self.agents = self.possible_agents[:]
        obs = self._keep_red(self.engine.observe()[0])
        if self.render_mode == "human":
            self.render()
        zeros = [0.0] * len(self.agents)
        infos = self._infos({name: zeros for name in REWARD_COMPONENTS}, [0, 0])
        return {a: obs[i] for i, a in enumerate(self.agents)}, infos

    def _keep_red(self, obs: np.ndarray) -> np.ndarray:
        """Keep red's rows of every player's obs [N, D] for the opponent's next move, as [1, n_red, D]."""
        if self.opponent is not None:
            self._red_obs = torch.from_numpy(obs[self.config.n_blue:])[None]
        return obs

    def _infos(self, components: dict[str, list[float]], score: list[int]) -> dict[str, dict[str, float | int]]:
        """Flat numeric infos, the same keys at reset and step (`INFO_KEYS`): TorchRL builds its info
        spec from reset's infos and cannot hold a nested dict."""
        n_blue, keys = self.config.n_blue, INFO_KEYS[:len(REWARD_COMPONENTS)]
        columns = [components[name] for name in REWARD_COMPONENTS]
        infos = {}
        for i, a in enumerate(self.agents):
            info = dict(zip(keys, [column[i] for column in columns]))
            if i < n_blue:
                info["score_for"], info["score_against"] = score[0], score[1]
            else:
                info["score_for"], info["score_against"] = score[1], score[0]
            infos[a] = info
        return infos

    def _check_actions(self, actions: dict[str, Any]) -> list[int]:
        """The actions of `self.agents` as ints, or a clear error."""
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise KeyError(f"no action given for agent(s) {missing}")
        extra = [a for a in actions if a not in self.agents]
        if extra:
            raise KeyError(f"actions given for agent(s) {extra} that are not in the match: expected {self.agents}")
        values = []
        for agent in self.agents:
            action = actions[agent]
            if isinstance(action, (bool, np.bool_)) or not (
                    isinstance(action, (int, np.integer))
                    or (isinstance(action, np.ndarray) and action.shape == () and np.issubdtype(action.dtype, np.integer))):
                raise TypeError(f"action for {agent!r} must be an int in [0, {NUM_ACTIONS - 1}], got {action!r}")
            if not 0 <= int(action) < NUM_ACTIONS:
                raise ValueError(
                    f"action {int(action)} for {agent!r} is outside the action space: "
                    f"expected an int in [0, {NUM_ACTIONS - 1}] ({', '.join(ACTION_NAMES)})"
                )
            values.append(int(action))
        return values

    def step(self, actions: dict[str, Any]):
        agents = self.agents
        if not agents:
            raise RuntimeError("the match is over (or was never started): call reset() before step()")
        # fast path: exactly the agents' keys, each a plain int in range (else the full checks)
        try:
            values = [actions[a] for a in agents]
        except (KeyError, TypeError):
            values = None
        if (values is None or len(actions) != len(agents)
                or not all(type(v) is int and 0 <= v < NUM_ACTIONS for v in values)):
            values = self._check_actions(actions)
        if self.opponent is not None:
            values = [*values, *red_actions(self.opponent, self._red_obs)[0].tolist()]
        rewards, components, terminated, truncated = self.engine.step(np.array([values], dtype=np.int64))
        obs = self._keep_red(self.engine.observe()[0])
        reward_list = rewards[0].tolist()
        component_lists = {name: value[0].tolist() for name, value in components.items()}
        term, trunc = bool(terminated[0]), bool(truncated[0])
        score = self.engine.state["score"][0].tolist()
        observations = dict(zip(agents, obs))
        rewards_d = dict(zip(agents, reward_list))
        terminations = dict.fromkeys(agents, term)
        truncations = dict.fromkeys(agents, trunc)
        infos = self._infos(component_lists, score)
        if term or trunc:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return observations, rewards_d, terminations, truncations, infos

    def state(self) -> np.ndarray:
        """Global state [state_dim] (world frame) for a centralized critic."""
        return self.engine.global_state()[0]

    def render(self, mode: str | None = None) -> np.ndarray | None:
        """Render the current frame in the `render_mode` given at construction: an RGB array
        [H, W, 3] uint8 for 'rgb_array', None for 'human' (drawn in a window) or without a mode.

        `mode` is accepted and ignored: Ray RLlib's `ParallelPettingZooEnv.render()` calls
        `par_env.render(self.render_mode)`, its own attribute, which is None unless set on the
        wrapper. The mode that counts is always the env's own `render_mode`.
        """
        if self.render_mode is None:
            gymnasium.logger.warn("render() was called without a render_mode; pass render_mode='rgb_array' or 'human'")
            return None
        if self._renderer is None:
            from .render import SoccerRenderer

            self._renderer = SoccerRenderer(self.config, render_mode=self.render_mode, fps=self.metadata["render_fps"])
        return self._renderer.render(self.engine.frame(0))

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
