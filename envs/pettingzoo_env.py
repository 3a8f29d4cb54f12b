"""`PettingZooTeamEnv`: B copies of any PettingZoo parallel env as one `TeamVecEnv` of the trainer.

    marl-grpo train --env pettingzoo:mpe2.simple_spread_v3:parallel_env --env-kwargs N=3

PettingZoo's Parallel API (`pettingzoo.utils.env.ParallelEnv`: `possible_agents`, `agents`,
`reset(seed) -> (obs, infos)`, `step(actions) -> (obs, rewards, terminations, truncations, infos)`,
every value a dict keyed by agent) is stepped copy by copy, and its dicts are gathered into the
batched tensors of `marl_grpo.envs.team.TeamVecEnv`. pettingzoo and the env's own package are
imported only when an env is built.
"""

from __future__ import annotations

import copyreg
import importlib
import io
import pickle
import zlib
from typing import Any, Callable

import numpy as np
import torch

from .backend import resolve_device

SPEC_FORM = "'<module>:<function>', e.g. 'mpe2.simple_spread_v3:parallel_env'"
"""the form of a string factory"""


def load_factory(spec: str) -> Callable[..., Any]:
    """The function named by `"module:function"` (imported with importlib).

    An unknown module, or a module without that function, raises one ValueError saying what is
    allowed; the latter lists the module's public callables that look like env constructors.
    """
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name or ":" in function_name:
        raise ValueError(f"PettingZoo env {spec!r} is invalid: expected {SPEC_FORM}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        # a missing dependency inside an existing module is not an unknown module: say which one
        if err.name is not None and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise ValueError(f"PettingZoo env module {module_name!r} was not found (is its package installed?): "
                             f"expected {SPEC_FORM}") from err
        raise ValueError(f"importing PettingZoo env module {module_name!r} failed: {err}") from err
    factory = getattr(module, function_name, None)
    if not callable(factory):
        candidates = sorted(name for name in dir(module)
                            if not name.startswith("_") and "env" in name.lower() and callable(getattr(module, name)))
        raise ValueError(f"module {module_name!r} has no function {function_name!r}: its env constructors are "
                         f"{', '.join(candidates) if candidates else 'none'} (expected {SPEC_FORM})")
    return factory


def infer_teams(agents: tuple[str, ...]) -> tuple[int, ...]:
    """One team per agent-name prefix (the name before its last "_"), numbered in order of first appearance.

    `("adversary_0", "agent_0", "agent_1") -> (0, 1, 1)`; `("agent_0", "agent_1") -> (0, 0)`. A name
    without "_" is its own prefix.
    """
    prefixes: dict[str, int] = {}
    return tuple(prefixes.setdefault(agent.rpartition("_")[0] or agent, len(prefixes)) for agent in agents)


def _restore_dict(obj: Any, state: dict[str, Any]) -> None:
    obj.__dict__.update(state)


def _load_surface(pixels: bytes, size: tuple[int, int], fmt: str) -> Any:
    import pygame

    return pygame.image.frombytes(zlib.decompress(pixels), size, fmt)


def _load_font(path: str, size: float) -> Any:
    import pygame.freetype

    pygame.freetype.init()
    return pygame.freetype.Font(path, size)


class _StatePickler(pickle.Pickler):
    """Pickles a running env whole, where a plain pickle or `copy.deepcopy` cannot.

    - Every PettingZoo env is a gymnasium `EzPickle`, which pickles only its constructor arguments
      (a copy is a fresh, unreset env): its attributes are pickled instead.
    - pygame's objects do not pickle, and envs hold some even without rendering (mpe2 keeps a
      drawing surface and a font): a `Surface` is kept as its pixels, a `freetype.Font` as its
      file and size.
    """

    def __init__(self, file: Any, ez_pickle: type):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.ez_pickle = ez_pickle

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type):
            return NotImplemented
        if isinstance(obj, self.ez_pickle) and hasattr(obj, "__dict__"):
            return copyreg.__newobj__, (type(obj),), obj.__dict__, None, None, _restore_dict
        if type(obj).__module__.startswith("pygame"):
            import pygame
            import pygame.freetype

            if isinstance(obj, pygame.Surface):
                fmt = "RGBA" if obj.get_flags() & pygame.SRCALPHA else "RGB"
                return _load_surface, (zlib.compress(pygame.image.tobytes(obj, fmt)), obj.get_size(), fmt)
            if isinstance(obj, pygame.freetype.Font) and obj.path:
                return _load_font, (obj.path, obj.size)
        return NotImplemented


def _dump_state(obj: Any) -> bytes:
    from gymnasium.utils import EzPickle

    buffer = io.BytesIO()
    _StatePickler(buffer, EzPickle).dump(obj)
    return buffer.getvalue()


class PettingZooTeamEnv:
    """`num_envs` copies of a PettingZoo parallel env, stepped as one batch (`TeamVecEnv`).

    `factory` builds one copy: a callable (`mpe2.simple_spread_v3.parallel_env`) or its name
    `"module:function"`; `env_kwargs` go to it (`N=3, max_cycles=25`). An AEC env is refused: pass
    the module's `parallel_env`. mpe2's envs take discrete actions by default (`continuous_actions=False`).

    Requirements, checked at construction: every agent of `possible_agents` (the agents, in that
    order: N = `num_agents`) has a `Discrete` action space of the same size (`num_actions`) and a
    `Box` observation space of the same flat width (`obs_dim`; observations are flattened to it).

    - `teams`: a mapping `{agent: team}` with teams 0, 1, ...; by default one team per agent-name
      prefix (`infer_teams`: "adversary_0" and "agent_0" are two teams; all "agent_k" one team).
      Pass it where names do not say who plays with whom.
    - Agents that leave `env.agents` mid-episode (died) get zero observations and zero rewards, and
      their actions are ignored, until the copy's episode ends.
    - A copy's episode ends when all of its agents are terminated or truncated (or `env.agents` is
      empty), or after `max_steps` steps (default: the env's own `max_cycles`; required for envs
      without one). It is `terminated` when every agent left terminated, `truncated` when the env
      reported a truncation (its time limit) or `max_steps` cut it; the two never hold together.
    - Seeds: `reset(seed)` resets copy b with `seed + b` (the construction resets with `seed`);
      `reset_blocks(seed, group_size)` resets every copy of block k with `seed + k`. A copy reset
      within `step` (auto-reset) gets its new episode's seed from `seed`, the copy's index and how
      many episodes the copy has begun (`numpy.random.SeedSequence` spawn keys), so the same seed
      replays the same run.
    - `state()`: the env's own global state (`env.state()`, when it has a `state_space`), else every
      agent's observation concatenated [B, N * D].
    - `can_branch` is False: the adapter cannot copy one running env into another slot in the
      middle of a rollout, so the trainer's `branch` group mode is refused (use `team` or `episode`).
    - `get_state()` pickles every copy whole with the adapter's seeds, counters and running returns
      into one uint8 tensor; `set_state` restores them for an exact resume. `copy.deepcopy` would not
      do: PettingZoo's envs are gymnasium `EzPickle`s, whose copies are rebuilt fresh and unreset, and
      mpe2's hold pygame objects, which neither copy nor pickle (see `_StatePickler`). It needs an env
      whose other attributes pickle (no open window, file or lambda): build it with `render_mode=None`.

    Cost: `step` runs the B copies one after another in a Python loop, each calling the env's own
    `step` (itself Python, per agent), so its time grows linearly in B and is dominated by the env
    itself; the batch does not run in parallel. The adapter's own part per copy is reading the
    env's dicts into preallocated numpy arrays; the whole batch then becomes tensors through one
    host-to-device copy per step. `state()` with an env-defined state calls each copy's `state()`.
    """

    can_branch = False

    def __init__(self, factory: Callable[..., Any] | str, num_envs: int = 16, device: Any = "cpu", seed: int = 0,
                 max_steps: int | None = None, teams: dict[str, int] | None = None, **env_kwargs: Any):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} is invalid: expected an int >= 1")
        self.name = factory if isinstance(factory, str) else (
            f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', repr(factory))}")
        make = load_factory(factory) if isinstance(factory, str) else factory
        if not callable(make):
            raise ValueError(f"factory={factory!r} is invalid: expected a callable returning a PettingZoo "
                             f"ParallelEnv, or {SPEC_FORM}")
        self.device = resolve_device(device)
        self.num_envs = int(num_envs)
        self.envs = [self._build(make, env_kwargs) for _ in range(self.num_envs)]
        first = self.envs[0]
        self.agents: tuple[str, ...] = tuple(first.possible_agents)
        for env in self.envs[1:]:
            if tuple(env.possible_agents) != self.agents:
                raise ValueError(f"{self.name}: the copies disagree on possible_agents ({self.agents} vs "
                                 f"{tuple(env.possible_agents)}); the factory must build the same env every call")
        self.num_agents = len(self.agents)
        self._index = {agent: i for i, agent in enumerate(self.agents)}
        self.num_actions, self._action_start = self._check_actions(first)
        self.obs_dim = self._check_observations(first)
        self.teams = self._resolve_teams(teams)
        self.max_steps = self._resolve_max_steps(first, max_steps)
        self._state_space_dim = self._global_state_dim(first)
        self.state_dim = self._state_space_dim or self.num_agents * self.obs_dim

        B, N, D = self.num_envs, self.num_agents, self.obs_dim
        # one flat buffer, one contiguous block per output, so a step hands over the batch in one copy
        sizes = {"obs": B * N * D, "rewards": B * N, "episode_return": B * N, "episode_length": B,
                 "terminated": B, "truncated": B}
        self._flat = np.zeros(sum(sizes.values()), np.float32)
        self._slices: dict[str, slice] = {}
        start = 0
        for key, size in sizes.items():
            self._slices[key] = slice(start, start + size)
            start += size
        self._obs = self._flat[self._slices["obs"]].reshape(B, N, D)  # numpy views into the flat buffer
        self._rewards = self._flat[self._slices["rewards"]].reshape(B, N)
        self._ended_return = self._flat[self._slices["episode_return"]].reshape(B, N)
        self._ended_length = self._flat[self._slices["episode_length"]]
        self._terminated = self._flat[self._slices["terminated"]]
        self._truncated = self._flat[self._slices["truncated"]]
        self._actions_np = np.zeros((B, N), np.int64)
        self._returns = np.zeros((B, N), np.float64)
        self._lengths = np.zeros(B, np.int64)
        self._episodes = np.zeros(B, np.int64)  # episodes begun by each copy since the last seeded reset
        self._seed = 0
        self.reset(seed)

    # ------------------------------------------------------------------ construction checks
    def _build(self, make: Callable[..., Any], env_kwargs: dict[str, Any]) -> Any:
        try:
            env = make(**env_kwargs)
        except TypeError as err:
            raise ValueError(f"{self.name}: building the env with {env_kwargs} failed: {err}") from err
        if hasattr(env, "agent_iter"):  # AECEnv's turn iterator: a ParallelEnv has none
            raise ValueError(f"{self.name} returned an AEC env ({type(env).__name__}), which is not accepted: "
                             "PettingZooTeamEnv needs a ParallelEnv (use the module's parallel_env)")
        missing = [name for name in ("possible_agents", "reset", "step", "action_space", "observation_space")
                   if not hasattr(env, name)]
        if missing:
            raise ValueError(f"{self.name} returned {type(env).__name__}, not a PettingZoo ParallelEnv (it lacks "
                             f"{', '.join(missing)}); an AEC env is not accepted either: use the module's parallel_env")
        return env

    def _check_actions(self, env: Any) -> tuple[int, np.ndarray]:
        from gymnasium import spaces

        sizes, starts = {}, []
        for agent in self.agents:
            space = env.action_space(agent)
            if not isinstance(space, spaces.Discrete):
                hint = (" (pass continuous_actions=False)"
                        if getattr(getattr(env, "unwrapped", env), "continuous_actions", False)
                        else "")
                raise ValueError(f"{self.name}: agent {agent!r} has action space {space}: every agent needs a "
                                 f"Discrete action space{hint}")
            sizes[agent] = int(space.n)
            starts.append(int(space.start))
        first_agent, size = self.agents[0], sizes[self.agents[0]]
        for agent, n in sizes.items():
            if n != size:
                raise ValueError(f"{self.name}: agent {agent!r} has Discrete({n}) actions but {first_agent!r} has "
                                 f"Discrete({size}): every agent needs the same number of actions")
        return size, np.asarray(starts, np.int64)

    def _check_observations(self, env: Any) -> int:
        from gymnasium import spaces

        widths = {}
        for agent in self.agents:
            space = env.observation_space(agent)
            if not isinstance(space, spaces.Box):
                raise ValueError(f"{self.name}: agent {agent!r} has observation space {space}: every agent needs "
                                 "a Box observation space")
            widths[agent] = int(np.prod(space.shape))
        first_agent, width = self.agents[0], widths[self.agents[0]]
        for agent, w in widths.items():
            if w != width:
                raise ValueError(f"{self.name}: agent {agent!r} observes {w} values but {first_agent!r} observes "
                                 f"{width}: every agent needs the same observation width")
        return width

    def _resolve_teams(self, teams: dict[str, int] | None) -> tuple[int, ...]:
        if teams is None:
            return infer_teams(self.agents)
        if not isinstance(teams, dict) or set(teams) != set(self.agents):
            given = sorted(teams) if isinstance(teams, dict) else teams
            raise ValueError(f"teams={given!r} is invalid: expected a dict mapping every agent of {list(self.agents)} "
                             "to its team")
        values = [teams[agent] for agent in self.agents]
        if (any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values)
                or set(values) != set(range(max(values) + 1))):
            raise ValueError(f"teams={teams!r} is invalid: teams are ints numbered 0, 1, ... with none left out")
        return tuple(int(v) for v in values)

    def _resolve_max_steps(self, env: Any, max_steps: int | None) -> int:
        if max_steps is None:
            max_steps = next((getattr(e, "max_cycles") for e in (env, getattr(env, "unwrapped", env))
                              if hasattr(e, "max_cycles")), None)
            if max_steps is None:
                raise ValueError(f"{self.name} has no max_cycles attribute: pass max_steps (the longest episode, "
                                 "in steps)")
        if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
            raise ValueError(f"max_steps={max_steps!r} is invalid: expected an int >= 1")
        return int(max_steps)

    def _global_state_dim(self, env: Any) -> int | None:
        """The width of the env's own `state()`, or None where it has no `state_space`."""
        from gymnasium import spaces

        try:
            space = env.state_space
        except (AttributeError, NotImplementedError):
            return None
        return int(np.prod(space.shape)) if isinstance(space, spaces.Box) else None

    # ------------------------------------------------------------------ episodes
    def _write_obs(self, b: int, obs: dict[str, Any]) -> None:
        """Copy b's observations into row b; agents without one (dead, not spawned) get zeros."""
        self._obs[b] = 0.0
        if obs:
            rows = [self._index[agent] for agent in obs]
            self._obs[b, rows] = np.stack([np.asarray(o, np.float32).reshape(-1) for o in obs.values()])

    def _reset_copy(self, b: int, seed: int) -> None:
        obs, _ = self.envs[b].reset(seed=int(seed))
        self._write_obs(b, obs)
        self._returns[b] = 0.0
        self._lengths[b] = 0

    def _episode_seed(self, b: int) -> int:
        sequence = np.random.SeedSequence(self._seed % 2**64, spawn_key=(b, int(self._episodes[b])))
        return int(sequence.generate_state(1, np.uint32)[0])

    def _seeded_reset(self, seed: int | None, copy_seeds: Callable[[int], int]) -> torch.Tensor:
        if seed is None:
            seed = int(np.random.SeedSequence().entropy) & 0x7FFFFFFF
        self._seed = int(seed)
        self._episodes[:] = 0
        for b in range(self.num_envs):
            self._reset_copy(b, copy_seeds(b))
        return torch.tensor(self._obs, device=self.device)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset copy b with `seed + b` (a random seed when None); returns obs [B, N, D]."""
        return self._seeded_reset(seed, lambda b: self._seed + b)

    def reset_blocks(self, seed: int, group_size: int) -> torch.Tensor:
        """Reset every copy of block k (copies `k*group_size ... k*group_size + group_size - 1`) with
        `seed + k`, so a block's copies start identically; returns obs [B, N, D]."""
        if (isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1
                or self.num_envs % group_size):
            raise ValueError(f"group_size={group_size!r} is invalid: expected an int >= 1 dividing "
                             f"num_envs={self.num_envs}")
        return self._seeded_reset(seed, lambda b: self._seed + b // int(group_size))

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                   dict[str, Any]]:
        """Step every copy with `actions` [B, N] (int64); see the class docstring for the rest."""
        B, N = self.num_envs, self.num_agents
        actions_np = np.asarray(torch.as_tensor(actions).detach().cpu(), dtype=np.int64)
        if actions_np.shape != (B, N):
            raise ValueError(f"actions must have shape (num_envs, num_agents) = {(B, N)}, got {actions_np.shape}")
        if actions_np.size and (actions_np.min() < 0 or actions_np.max() >= self.num_actions):
            raise ValueError(f"actions must lie in [0, {self.num_actions - 1}], got values in "
                             f"[{actions_np.min()}, {actions_np.max()}]")
        np.add(actions_np, self._action_start, out=self._actions_np)
        self._rewards[:] = 0.0
        self._terminated[:] = 0.0
        self._truncated[:] = 0.0
        for b, env in enumerate(self.envs):
            row = self._actions_np[b]
            obs, rewards, terminations, truncations, _ = env.step(
                {agent: int(row[self._index[agent]]) for agent in env.agents})
            self._write_obs(b, obs)
            if rewards:
                self._rewards[b, [self._index[agent] for agent in rewards]] = list(rewards.values())
            self._lengths[b] += 1
            ended = not env.agents or (bool(terminations) and all(
                done or truncations.get(agent, False) for agent, done in terminations.items()))
            if ended or self._lengths[b] >= self.max_steps:
                if ended and not any(truncations.values()):
                    self._terminated[b] = 1.0
                else:
                    self._truncated[b] = 1.0
        # the running returns after this step, every copy's: what infos report where a copy ended
        self._returns += self._rewards
        self._ended_return[:] = self._returns
        self._ended_length[:] = self._lengths
        for b in np.flatnonzero(self._terminated + self._truncated):
            self._episodes[b] += 1
            self._reset_copy(int(b), self._episode_seed(int(b)))
        # a copy (not a view of the reused buffer), so the tensors handed out never change afterwards
        flat = torch.tensor(self._flat, device=self.device)
        parts = {key: flat[part] for key, part in self._slices.items()}
        obs = parts["obs"].view(B, N, self.obs_dim)
        infos = {"episode_return": parts["episode_return"].view(B, N),
                 "episode_length": parts["episode_length"].long()}
        return obs, parts["rewards"].view(B, N), parts["terminated"].bool(), parts["truncated"].bool(), infos

    def state(self) -> torch.Tensor:
        """The global state [B, state_dim]: the env's `state()` where it has one, else [B, N * D]."""
        if self._state_space_dim is None:
            return torch.tensor(self._obs.reshape(self.num_envs, -1), device=self.device)
        states = np.empty((self.num_envs, self.state_dim), np.float32)
        for b, env in enumerate(self.envs):
            states[b] = np.asarray(env.state(), np.float32).reshape(-1)
        return torch.from_numpy(states).to(self.device)

    def branch(self, src_idx: Any, group_size: int) -> torch.Tensor:
        raise ValueError(f"{self.name}: the PettingZoo adapter cannot copy an env's state into other slots, so "
                         "branch() is not available: use the group mode 'team' or 'episode'")

    # ------------------------------------------------------------------ exact resume
    def get_state(self) -> dict[str, torch.Tensor]:
        """Every copy (pickled with its attributes) with the adapter's seeds, counters, running returns
        and current observations, as one uint8 tensor under "instances"; restore it with `set_state`."""
        payload = {"envs": self.envs, "seed": self._seed, "episodes": self._episodes, "returns": self._returns,
                   "lengths": self._lengths, "obs": self._obs}
        try:
            data = _dump_state(payload)
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            raise ValueError(f"{self.name}: get_state() could not copy the envs (they need attributes that "
                             f"pickle: build them with render_mode=None): {err}") from err
        return {"instances": torch.frombuffer(bytearray(data), dtype=torch.uint8)}

    def set_state(self, snapshot: dict[str, torch.Tensor]) -> torch.Tensor:
        """Restore what `get_state` returned; returns the obs [B, N, D] it held. The snapshot is
        unpickled: restore only snapshots you trust, as for the checkpoint that holds them."""
        if "instances" not in snapshot:
            raise ValueError(f"snapshot has keys {sorted(snapshot)}: expected the 'instances' of get_state()")
        payload = pickle.loads(snapshot["instances"].cpu().numpy().tobytes())
        if len(payload["envs"]) != self.num_envs:
            raise ValueError(f"snapshot holds {len(payload['envs'])} envs, this env has num_envs={self.num_envs}")
        self.envs = payload["envs"]
        self._seed = payload["seed"]
        self._episodes[:] = payload["episodes"]
        self._returns[:] = payload["returns"]
        self._lengths[:] = payload["lengths"]
        self._obs[:] = payload["obs"]
        return torch.tensor(self._obs, device=self.device)

    def close(self) -> None:
        for env in self.envs:
            env.close()
