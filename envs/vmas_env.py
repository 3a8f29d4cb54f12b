"""`VmasTeamEnv`: a VMAS scenario (VMAS's own batched torch env) as one `TeamVecEnv` of the trainer.

    marl-grpo train --env vmas:navigation --env-kwargs n_agents=3

VMAS (Bettini et al., "VMAS: A Vectorized Multi-Agent Simulator for Collective Robot Learning",
DARS 2022; github.com/proroklab/VectorizedMultiAgentSimulator) already steps B copies of a scenario
as one batch of torch tensors: `vmas.make_env(scenario, num_envs=B, continuous_actions=False)`
takes one [B, 1] action tensor per agent and returns per-agent lists of [B, D] observations and
[B] rewards. The adapter stacks those lists into the [B, N, ...] tensors of
`marl_grpo.envs.team.TeamVecEnv`, resets ended copies within the step, keeps the episode counters,
owns the randomness, and copies whole copies for `branch`. vmas is imported only when an env is
built (`pip install "vmas>=1.5"`).
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import os
import random
import sys
import traceback
import warnings
from typing import Any, Iterator

import numpy as np
import torch

from .backend import resolve_device

BRANCHABLE_SCENARIOS = ("balance", "navigation")
"""the scenarios whose whole per-copy state `branch` provably copies (checked against their VMAS 1.5 source):
every value that changes during an episode is an entity's `state`, an agent's `action`, VMAS's step
counter or a tensor attribute of the scenario or of an agent with the batch as its leading dim, and
their steps draw no random numbers (no action or communication noise)"""

BENCHMARL_MAX_STEPS = {"ball_passage": 500, "football": 500, "joint_passage": 500, "joint_passage_size": 500,
                       "multi_give_way": 200, "passage": 500}
"""episode lengths of BenchMARL's VMAS tasks (benchmarl/conf/task/vmas/<task>.yaml, BenchMARL 1.5) other than
its usual 100 steps"""

DEFAULT_MAX_STEPS = 100
"""the episode length of every other scenario (BenchMARL's, e.g. navigation and balance)"""

_VMAS_CONSTANTS = frozenset({"_u_range_tensor", "_u_multiplier_tensor", "_u_noise_tensor", "_gravity", "_color"})
"""attributes of VMAS's own objects (actions, entities, the world) that hold one constant per world, however long:
a small batch must not mistake them for per-copy tensors"""

_VMAS_SCRATCH = frozenset({"forces_dict", "torques_dict", "entity_index_map"})
"""attributes of VMAS's World rebuilt at the start of every `World.step`: never state"""

# distinct tags keep the seed streams of the adapter's different draws apart
_TAG_CONSTRUCT, _TAG_RESET, _TAG_EPISODE, _TAG_BLOCK, _TAG_STEP, _TAG_OBSERVE = range(1, 7)


def _derive_seed(*entropy: int) -> int:
    """One 32-bit seed from non-negative ints (numpy's SeedSequence hash): fits every seeder VMAS uses."""
    return int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1, np.uint32)[0])


def _import_vmas() -> Any:
    """`import vmas`, undoing what the import writes into the process environment.

    `import vmas` sets `PYGLET_HEADLESS_DEVICE` from `CUDA_VISIBLE_DEVICES`
    (`vmas.simulator.utils._init_pyglet_device`); a library must leave the environment as it was.
    """
    if "vmas" in sys.modules:
        return sys.modules["vmas"]
    before = os.environ.get("PYGLET_HEADLESS_DEVICE")
    try:
        import vmas
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError('VmasTeamEnv needs VMAS: pip install "vmas>=1.5"') from err
    finally:
        if before is None:
            os.environ.pop("PYGLET_HEADLESS_DEVICE", None)
        else:
            os.environ["PYGLET_HEADLESS_DEVICE"] = before
    return vmas


def known_scenarios() -> tuple[str, ...]:
    """Every scenario name `vmas.make_env` loads: VMAS's own, its MPE ports and its debug scenarios."""
    vmas = _import_vmas()
    return tuple(vmas.scenarios) + tuple(vmas.mpe_scenarios) + tuple(vmas.debug_scenarios)


# ---------------------------------------------------------------------------- per-copy tensors of a VMAS env
def _is_vmas_object(obj: Any, scenario_module: str) -> bool:
    """An object of VMAS or of the scenario's own module (VMAS loads a scenario file as a nameless module)."""
    module = type(obj).__module__ or ""
    return (module == scenario_module or module.startswith("vmas.")) and not module.startswith(
        "vmas.simulator.rendering")


def per_env_tensors(env: Any, num_envs: int) -> dict[str, tuple[Any, str | int, torch.Tensor]]:
    """Every per-copy tensor of a VMAS `Environment`: `{path: (owner, key, tensor)}`.

    Walks the attributes of VMAS's objects (the environment, its scenario, the world, entities and
    their `state`, agents' `action`, sensors, dynamics, joints; objects of classes defined in the
    scenario's file, such as football's scripted controllers) and of the lists and dicts they
    hold; a tensor is per-copy when its leading dim is `num_envs`, except VMAS's per-world constants
    (`_VMAS_CONSTANTS`) and the world's per-step scratch (`_VMAS_SCRATCH`). Tensors inside tuples are
    not reached. `path` names the slot (`scenario._world._agents.0._state._pos`): attribute names,
    list indices, `@key` for a dict's string key, `@#i` for a dict's i-th entry under another key.
    The same tensor object under two paths appears under both.
    """
    scenario_module = type(env.scenario).__module__ or ""
    found: dict[str, tuple[Any, str | int, torch.Tensor]] = {}
    visited: set[int] = set()

    def visit(owner: Any, key: str | int, value: Any, path: str) -> None:
        if isinstance(value, torch.Tensor):
            if value.ndim >= 1 and value.shape[0] == num_envs:
                found[path] = (owner, key, value)
            return
        if id(value) in visited:
            return
        if isinstance(value, list):
            visited.add(id(value))
            for i, item in enumerate(value):
                visit(value, i, item, f"{path}.{i}")
        elif isinstance(value, dict):
            visited.add(id(value))
            for i, (k, item) in enumerate(value.items()):
                token = f"@{k}" if isinstance(k, str) and "." not in k and not k.startswith("#") else f"@#{i}"
                visit(value, k, item, f"{path}.{token}")
        elif (not isinstance(value, (type, enum.Enum)) and hasattr(value, "__dict__")
              and _is_vmas_object(value, scenario_module)):
            visited.add(id(value))
            core = type(value).__module__.startswith("vmas.simulator")
            for name, item in vars(value).items():
                if core and (name in _VMAS_CONSTANTS or name in _VMAS_SCRATCH):
                    continue
                visit(value, name, item, f"{path}.{name}" if path else name)

    visit(None, "", env, "")
    return found


def _assign(owner: Any, key: str | int, value: torch.Tensor) -> None:
    if isinstance(owner, (list, dict)):
        owner[key] = value
    else:
        vars(owner)[key] = value  # the instance slot itself, past any property of the same name


def _resolve_parent(root: Any, path: str) -> tuple[Any, str | int]:
    """The object holding the slot `path` of `per_env_tensors`, and the slot's key there."""
    tokens = path.split(".")
    obj = root
    for depth, token in enumerate(tokens):
        if isinstance(obj, list):
            key: Any = int(token)
        elif isinstance(obj, dict):
            key = list(obj)[int(token[2:])] if token.startswith("@#") else token[1:]
        else:
            key = token
        if depth == len(tokens) - 1:
            return obj, key
        try:
            obj = obj[key] if isinstance(obj, (list, dict)) else vars(obj)[key]
        except (KeyError, IndexError, TypeError) as err:
            raise ValueError(f"snapshot entry {path!r} has no place in this env (was it built with other "
                             "scenario kwargs?)") from err
    raise AssertionError("unreachable")


def _infer_teams(agents: list[Any]) -> tuple[int, ...]:
    """MPE's adversaries (`agent.adversary`) against the others, football's red against blue, else one team;
    numbered 0, 1, ... in order of first appearance."""
    labels = []
    for agent in agents:
        if getattr(agent, "adversary", False):
            labels.append("adversary")
        else:
            labels.append(next((side for side in ("blue", "red") if f"_{side}_" in agent.name), ""))
    numbers: dict[str, int] = {}
    return tuple(numbers.setdefault(label, len(numbers)) for label in labels)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}={value!r} is invalid: expected an int >= {low}")
    return int(value)


class VmasTeamEnv:
    """`num_envs` copies of VMAS scenario `scenario` (`vmas.make_env(..., continuous_actions=False)`).

    Shapes: B = `num_envs`, N = `num_agents` (VMAS's policy agents, in its order; their names in
    `agents`), D = `obs_dim`.
    Every agent must observe one flat tensor of the same width and have the same `Discrete` actions
    (VMAS's discrete actions: its `discrete_action_nvec` flattened into one index, times the
    communication symbols of a speaking agent); otherwise construction raises a ValueError naming
    the scenario and the widths. `scenario_kwargs` go to the scenario (`n_agents=3`); one the
    scenario does not take raises.

    - `max_steps`: episodes are truncated after that many steps (default: BenchMARL's for the task,
      `BENCHMARL_MAX_STEPS`, else 100, as for navigation and balance). `terminated` is VMAS's `done`;
      `truncated` is the time limit on a copy that did not terminate (never both).
    - `step(actions [B, N] int64)`: VMAS's per-agent rewards [B, N] (shared in some scenarios:
      navigation's `shared_rew=True` gives every agent the team's position reward plus its own
      collision penalty; balance gives every agent the same reward). Ended copies are reset within
      the step (`obs` is then the new start) and `infos` keeps what ended, valid where
      `terminated | truncated`: `episode_return` [B, N] and `episode_length` [B] (int64).
    - `teams`: 0 for every agent, except in MPE scenarios with adversaries (`agent.adversary`:
      adversaries and the others) and football with policy agents on both sides (blue and red).
    - `state()`: every agent's observation concatenated [B, N * D] (VMAS has no global state; in
      navigation and balance the agents' observations together hold every entity's position).
    - Randomness: VMAS scenarios draw from torch's (and numpy's, Python's) global generators, inside
      a random state VMAS keeps for the whole process and swaps in around each call
      (`Environment.vmas_random_state`). Every call that may draw runs with a state the adapter seeds
      itself, under `torch.random.fork_rng` (which also covers a CUDA device), and VMAS's own state
      is put back afterwards: nothing process-wide changes, and a run depends only on its seeds.
      `reset(seed)` resets the whole batch in one VMAS reset drawn from `seed` (VMAS resets a batch
      from one stream, and a copy-by-copy reset costs a whole-batch pass per copy), and gives copy b
      the stream `seed + b`: the start of copy b's episode k >= 1 (its auto-resets) is drawn from
      `(seed + b, k)`, and each step from `(seed, steps since the reset)`.
    - `can_branch`: True for `BRANCHABLE_SCENARIOS`. `branch(src_idx, group_size)` copies every
      per-copy tensor of VMAS's objects (`per_env_tensors`: each entity's state, pos, vel, rot,
      ang_vel and an agent's c, force, torque; agents' actions; VMAS's step counter; the scenario's
      and the agents' own tensors such as navigation's `pos_rew`, `final_rew`, `agent.pos_shaping`),
      with the adapter's step counter, running return and copy streams, so copies replay their
      source bit for bit. Other scenarios may keep state it cannot see (Python values, tensors
      inside tuples) or draw noise in their steps, so `branch` raises there.
    - `reset_blocks(seed, group_size)`: block k (copies `k*G ... k*G + G - 1`) all start alike and
      carry the stream `seed + k`. A branchable scenario starts block k from copy k of `reset(seed)`;
      another resets each copy of block k on its own from `(seed + k)`, one VMAS reset per copy.
    - `get_state()` / `set_state(snapshot)`: the tensors `branch` copies, the adapter's counters and
      the last observations, as a flat dict of tensors. Exact for the branchable scenarios; for the
      others it restores what the walk sees.
    """

    def __init__(self, scenario: str, num_envs: int = 64, device: Any = "cpu", seed: int = 0,
                 max_steps: int | None = None, **scenario_kwargs: Any):
        vmas = _import_vmas()
        from vmas.simulator.environment import Environment

        if not isinstance(scenario, str) or scenario.removesuffix(".py") not in known_scenarios():
            raise ValueError(
                f"VMAS scenario {scenario!r} is unknown: expected one of {', '.join(vmas.scenarios)} "
                f"(or an MPE one: {', '.join(vmas.mpe_scenarios)}; or a debug one: {', '.join(vmas.debug_scenarios)})")
        self.scenario = scenario.removesuffix(".py")
        self.num_envs = _check_int("num_envs", num_envs, 1)
        seed = _check_int("seed", seed, 0)
        self.max_steps = _check_int("max_steps", BENCHMARL_MAX_STEPS.get(self.scenario, DEFAULT_MAX_STEPS)
                                    if max_steps is None else max_steps, 1)
        self.device = resolve_device(device)
        # None where a later VMAS drops it: the seeded generators then stand alone inside fork_rng
        self._vmas_stream: list[Any] | None = getattr(Environment, "vmas_random_state", None)
        self._env = self._make(vmas, seed, scenario_kwargs)
        self.can_branch = self.scenario in BRANCHABLE_SCENARIOS

        agents = list(self._env.agents)
        self.agents = tuple(agent.name for agent in agents)
        self.num_agents = len(agents)
        if self.num_agents == 0:
            raise ValueError(f"VMAS scenario {self.scenario!r} has no policy agents (all are scripted)")
        sizes = [int(space.n) for space in self._env.action_space.spaces]
        if len(set(sizes)) != 1:
            raise ValueError(f"VMAS scenario {self.scenario!r}: the agents have different numbers of discrete "
                             f"actions {dict(zip(self.agents, sizes))}: every agent needs the same Discrete actions")
        self.num_actions = sizes[0]
        self.teams = _infer_teams(agents)

        self._seed = seed
        B = self.num_envs
        self._copy_seed = torch.zeros(B, dtype=torch.int64)  # each copy's stream (on the CPU: read per reset)
        self._episodes = torch.zeros(B, dtype=torch.int64)  # episodes begun by each copy since its stream began
        self._steps_taken = 0  # steps since the last reset: the step stream's counter
        self._t = torch.zeros(B, dtype=torch.int64, device=self.device)
        self._episode_return = torch.zeros(B, self.num_agents, device=self.device)
        self._obs = self.reset(seed)
        self.obs_dim = int(self._obs.shape[-1])
        self.state_dim = self.num_agents * self.obs_dim

    # ------------------------------------------------------------------ construction
    def _make(self, vmas: Any, seed: int, scenario_kwargs: dict[str, Any]) -> Any:
        adapter_args = set(inspect.signature(vmas.make_env).parameters) - {"kwargs"}
        clash = sorted(set(scenario_kwargs) & adapter_args)
        if clash:
            raise ValueError(f"VMAS scenario {self.scenario!r}: {clash} are vmas.make_env settings the adapter "
                             "chooses itself (discrete actions, its own time limit and seeding), not scenario kwargs")
        with self._vmas_rng(_derive_seed(_TAG_CONSTRUCT, seed)), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                # seed=None: VMAS's own seeding calls torch.manual_seed, which also queues a CUDA seed for later
                env = vmas.make_env(self.scenario, num_envs=self.num_envs, device=self.device,
                                    continuous_actions=False, seed=None, dict_spaces=False, max_steps=None,
                                    **scenario_kwargs)
            except (AssertionError, TypeError, ValueError) as err:
                # a bare `assert` in make_world has no message: its source line says what failed
                reason = str(err) or f"{type(err).__name__} at `{traceback.extract_tb(err.__traceback__)[-1].line}`"
                raise ValueError(f"VMAS scenario {self.scenario!r} rejected its kwargs {scenario_kwargs}: "
                                 f"{reason}") from err
        unused = [w for w in caught if "passed but not used by the scenario" in str(w.message)]
        for w in caught:
            if w not in unused:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if unused:
            raise ValueError(f"VMAS scenario {self.scenario!r} does not take some of its kwargs: "
                             f"{str(unused[0].message).split(' This will')[0]}")
        return env

    def _stack_obs(self, obs: Any) -> torch.Tensor:
        """VMAS's per-agent observations -> [B, N, D] float32."""
        widths = {}
        for name, o in zip(self.agents, obs):
            if not isinstance(o, torch.Tensor) or o.ndim != 2:
                kind = type(o).__name__ if not isinstance(o, torch.Tensor) else f"a tensor of shape {tuple(o.shape)}"
                raise ValueError(f"VMAS scenario {self.scenario!r}: agent {name!r} observes {kind}; the adapter "
                                 "needs one flat [num_envs, D] tensor per agent")
            widths[name] = int(o.shape[1])
        if len(set(widths.values())) != 1:
            raise ValueError(f"VMAS scenario {self.scenario!r}: the agents observe different widths {widths}: "
                             "every agent needs the same observation width")
        return torch.stack(list(obs), 1).to(torch.float32)

    # ------------------------------------------------------------------ randomness
    @contextlib.contextmanager
    def _vmas_rng(self, seed: int) -> Iterator[None]:
        """Run VMAS with every generator it draws from seeded by `seed`, and put all of them back after."""
        cuda = ([self.device.index if self.device.index is not None else torch.cuda.current_device()]
                if self.device.type == "cuda" else [])
        saved = list(self._vmas_stream) if self._vmas_stream is not None else None
        with torch.random.fork_rng(devices=cuda):
            cpu = torch.Generator().manual_seed(seed).get_state()
            if self._vmas_stream is not None:
                self._vmas_stream[:] = [cpu, np.random.RandomState(seed).get_state(), random.Random(seed).getstate()]
            else:
                torch.random.set_rng_state(cpu)
            for index in cuda:
                torch.cuda.default_generators[index].manual_seed(seed)
            try:
                yield
            finally:
                if saved is not None:
                    self._vmas_stream[:] = saved

    def _observe(self, seed: int) -> torch.Tensor:
        with self._vmas_rng(seed):
            obs = self._env.get_from_scenario(get_observations=True, get_rewards=False, get_infos=False,
                                              get_dones=False)[0]
        return self._stack_obs(obs)

    def _begin(self, seed: int, copy_seed: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Zero the counters after a reset of the whole batch; copy b's stream is `copy_seed[b]`."""
        self._seed = seed
        self._copy_seed = copy_seed
        self._episodes = torch.zeros(self.num_envs, dtype=torch.int64)
        self._steps_taken = 0
        self._t = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self._episode_return = torch.zeros(self.num_envs, self.num_agents, device=self.device)
        self._obs = obs
        return obs

    def _check_seed(self, seed: int | None) -> int:
        if seed is None:
            return int(np.random.SeedSequence().entropy) & 0xFFFFFFFF
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**62:
            raise ValueError(f"seed={seed!r} is invalid: expected an int in [0, 2**62) or None")
        return int(seed)

    def _check_group_size(self, group_size: Any) -> int:
        if (isinstance(group_size, (bool, np.bool_)) or not isinstance(group_size, (int, np.integer))
                or group_size < 1 or self.num_envs % group_size):
            raise ValueError(f"group_size={group_size!r} is invalid: expected an int >= 1 dividing "
                             f"num_envs={self.num_envs}")
        return int(group_size)

    # ------------------------------------------------------------------ the protocol
    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every copy in one VMAS reset drawn from `seed` (random when None); copy b's later
        episodes come from the stream `seed + b`. Returns obs [B, N, D]."""
        seed = self._check_seed(seed)
        with self._vmas_rng(_derive_seed(_TAG_RESET, seed)):
            obs = self._env.reset()
        return self._begin(seed, seed + torch.arange(self.num_envs, dtype=torch.int64), self._stack_obs(obs))

    def reset_blocks(self, seed: int, group_size: int) -> torch.Tensor:
        """Block k (copies `k*group_size ... k*group_size + group_size - 1`) all start alike, with the
        stream `seed + k`; returns obs [B, N, D]. See the class docstring for how."""
        group_size = self._check_group_size(group_size)
        seed = self._check_seed(seed)
        blocks = torch.arange(self.num_envs // group_size)
        if self.can_branch:
            self.reset(seed)
            return self.branch(blocks, group_size)
        for b in range(self.num_envs):
            with self._vmas_rng(_derive_seed(_TAG_BLOCK, seed + b // group_size)):
                self._env.reset_at(b, return_observations=False)
        return self._begin(seed, seed + blocks.repeat_interleave(group_size),
                           self._observe(_derive_seed(_TAG_OBSERVE, seed)))

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                   dict[str, Any]]:
        """Step every copy with `actions` [B, N] (ints in [0, num_actions)); see the class docstring."""
        B, N = self.num_envs, self.num_agents
        actions = torch.as_tensor(actions, device=self.device)
        if tuple(actions.shape) != (B, N):
            raise ValueError(f"actions must have shape (num_envs, num_agents) = {(B, N)}, got {tuple(actions.shape)}")
        if actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool:
            raise ValueError(f"actions must be integer action indices, got dtype {actions.dtype}")
        if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= self.num_actions):
            raise ValueError(f"actions must lie in [0, {self.num_actions - 1}], got values in "
                             f"[{int(actions.min())}, {int(actions.max())}]")
        per_agent = [actions[:, i].long().unsqueeze(-1) for i in range(N)]
        with self._vmas_rng(_derive_seed(_TAG_STEP, self._seed, self._steps_taken)):
            obs_list, reward_list, done, _ = self._env.step(per_agent)
        self._steps_taken += 1
        obs = self._stack_obs(obs_list)
        rewards = torch.stack(reward_list, 1).to(torch.float32)
        # out of place, so that tensors handed out in infos are never changed afterwards
        self._t = self._t + 1
        self._episode_return = self._episode_return + rewards
        terminated = done.to(torch.bool)
        truncated = (self._t >= self.max_steps) & ~terminated
        infos: dict[str, Any] = {"episode_return": self._episode_return, "episode_length": self._t}
        ended = terminated | truncated
        ended_idx = torch.nonzero(ended).flatten().tolist()
        if ended_idx:
            self._episodes = self._episodes + ended.cpu().long()
            for b in ended_idx:
                with self._vmas_rng(_derive_seed(_TAG_EPISODE, int(self._copy_seed[b]), int(self._episodes[b]))):
                    self._env.reset_at(b, return_observations=False)
            fresh = self._observe(_derive_seed(_TAG_OBSERVE, self._seed, self._steps_taken))
            obs = torch.where(ended[:, None, None], fresh, obs)
            self._t = torch.where(ended, 0, self._t)
            self._episode_return = torch.where(ended[:, None], 0.0, self._episode_return)
        self._obs = obs
        return obs, rewards, terminated, truncated, infos

    def state(self) -> torch.Tensor:
        """The global state [B, N * D]: every agent's last observation, concatenated."""
        return self._obs.reshape(self.num_envs, self.state_dim)

    def branch(self, src_idx: Any, group_size: int) -> torch.Tensor:
        """Fill the batch with `group_size` copies of each copy in `src_idx`; returns the new obs.

        Afterwards slots `i*group_size ... i*group_size + group_size - 1` hold copies of
        `src_idx[i]`: every per-copy tensor of the VMAS env (`per_env_tensors`), the episode's step
        count, its running return and the copy's stream.
        """
        if not self.can_branch:
            raise ValueError(
                f"VMAS scenario {self.scenario!r} does not support branch(): the copy sees only tensors with the "
                "batch as leading dim, and this scenario has not been checked to keep all of its per-copy state "
                "there and to draw no random numbers while it steps (Python values or noise would not be copied); "
                f"branch is available for {', '.join(BRANCHABLE_SCENARIOS)}: use the group mode 'team' or 'episode'")
        src = torch.as_tensor(src_idx).reshape(-1)
        if src.dtype.is_floating_point or src.dtype == torch.bool:
            raise TypeError(f"src_idx must hold integer copy indices, got dtype {src.dtype}")
        if (isinstance(group_size, (bool, np.bool_)) or not isinstance(group_size, (int, np.integer))
                or group_size < 1):
            raise ValueError(f"group_size={group_size!r} is invalid: expected an int >= 1")
        if src.numel() * group_size != self.num_envs:
            raise ValueError(f"len(src_idx) * group_size must equal num_envs={self.num_envs}, "
                             f"got {src.numel()} * {group_size} = {src.numel() * group_size}")
        if src.numel() and (int(src.min()) < 0 or int(src.max()) >= self.num_envs):
            raise ValueError(f"src_idx must lie in [0, {self.num_envs - 1}], got {src.tolist()}")
        index = src.long().cpu().repeat_interleave(int(group_size))
        on_device: dict[torch.device, torch.Tensor] = {}
        copies: dict[int, torch.Tensor] = {}  # one copy per tensor object, so slots sharing one keep sharing
        for owner, key, tensor in per_env_tensors(self._env, self.num_envs).values():
            if id(tensor) not in copies:
                where = on_device.setdefault(tensor.device, index.to(tensor.device))
                copies[id(tensor)] = tensor[where]
            _assign(owner, key, copies[id(tensor)])
        device_index = index.to(self.device)
        self._t = self._t[device_index]
        self._episode_return = self._episode_return[device_index]
        self._copy_seed = self._copy_seed[index]
        self._episodes = self._episodes[index]
        self._obs = self._obs[device_index]
        return self._obs

    def get_state(self) -> dict[str, torch.Tensor]:
        """Every copy's state: `vmas.<path>` for each tensor of `per_env_tensors`, `adapter.*` for the
        adapter's counters, seeds and last observations. Restore it with `set_state`."""
        snapshot = {f"vmas.{path}": tensor.clone()
                    for path, (_, _, tensor) in per_env_tensors(self._env, self.num_envs).items()}
        snapshot.update({
            "adapter.seed": torch.tensor(self._seed, dtype=torch.int64),
            "adapter.steps_taken": torch.tensor(self._steps_taken, dtype=torch.int64),
            "adapter.copy_seed": self._copy_seed.clone(),
            "adapter.episodes": self._episodes.clone(),
            "adapter.t": self._t.clone(),
            "adapter.episode_return": self._episode_return.clone(),
            "adapter.obs": self._obs.clone(),
        })
        return snapshot

    def set_state(self, snapshot: dict[str, torch.Tensor]) -> torch.Tensor:
        """Restore what `get_state` returned (from an env of the same scenario, kwargs and num_envs);
        returns the obs [B, N, D] it held."""
        required = ("adapter.seed", "adapter.steps_taken", "adapter.copy_seed", "adapter.episodes", "adapter.t",
                    "adapter.episode_return", "adapter.obs")
        missing = [key for key in required if key not in snapshot]
        if missing:
            raise ValueError(f"snapshot lacks {missing}: expected the dict of VmasTeamEnv.get_state()")
        obs_shape = (self.num_envs, self.num_agents, self.obs_dim)
        if tuple(snapshot["adapter.obs"].shape) != obs_shape:
            raise ValueError(f"snapshot holds obs of shape {tuple(snapshot['adapter.obs'].shape)}, this env's are "
                             f"{obs_shape} (num_envs, num_agents, obs_dim): another scenario, kwargs or num_envs")
        current = per_env_tensors(self._env, self.num_envs)
        copies: dict[int, torch.Tensor] = {}  # slots that share one tensor here get one restored tensor
        for key, value in snapshot.items():
            if not key.startswith("vmas."):
                continue
            path = key[len("vmas."):]
            if path in current:
                owner, slot, tensor = current[path]
                if id(tensor) not in copies:
                    copies[id(tensor)] = value.to(tensor.device, copy=True)
                restored = copies[id(tensor)]
            else:  # made during an episode (e.g. on the first reward), not yet in this env
                owner, slot = _resolve_parent(self._env, path)
                restored = value.to(self.device, copy=True)
            _assign(owner, slot, restored)
        self._seed = int(snapshot["adapter.seed"])
        self._steps_taken = int(snapshot["adapter.steps_taken"])
        self._copy_seed = snapshot["adapter.copy_seed"].to("cpu", torch.int64, copy=True)
        self._episodes = snapshot["adapter.episodes"].to("cpu", torch.int64, copy=True)
        self._t = snapshot["adapter.t"].to(self.device, torch.int64, copy=True)
        self._episode_return = snapshot["adapter.episode_return"].to(self.device, torch.float32, copy=True)
        self._obs = snapshot["adapter.obs"].to(self.device, torch.float32, copy=True)
        return self._obs

    def close(self) -> None:
        viewer = getattr(self._env, "viewer", None)
        if viewer is not None:
            viewer.close()
            self._env.viewer = None
