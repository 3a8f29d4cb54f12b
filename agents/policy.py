"""`SoccerPolicy`: the one shared network that acts for every player of both teams.

It reads the egocentric, mirrored observation (see `marl_grpo.envs.soccer_v0`) of each player and
returns logits over the 10 actions. Every method takes observations of any leading shape
`[..., D]` (`[B, N, D]` from the vector env, `[R, D]` rows from a rollout buffer, `[D]` for one
player) and runs one batched forward over all rows; there is no Python loop over players or
matches.

| arch | what it sees | team sizes |
|---|---|---|
| `"mlp"` | the whole observation vector: `D -> hidden -> hidden -> 10` | the one it was built for |
| `"entity"` | self features, plus teammates and opponents as sets (DeepSets or attention) | any, 1 to 11 a side, with the same weights |

The entity encoder splits the observation by its layout into

- **self features** (20): own position and velocity, ball position and velocity, ball in reach,
  both goals, time left, score, team one-hot (18), plus the numbers of present teammates and
  opponents (x 0.2). The slot one-hot is left out: its width depends on the team size.
- **teammates** `[K, 5]` and **opponents** `[M, 5]` (relative position, velocity, present flag),
  K = M - 1, M = the larger team size.

Each entity type has its own small embedding MLP (phi). Entities whose present flag is 0 (the
empty slots of uneven teams) are masked out, so neither their number nor their features change
the output. The embeddings are pooled per type (`pool="meanmax"`: masked mean and max, DeepSets,
Zaheer et al. 2017; or `pool="attention"`: one multi-head attention read-out with the self
embedding as query and a learned "nothing here" key/value, Lee et al. 2019's pooling by
attention), concatenated with the self embedding and mapped to logits by an MLP head. Pooling
makes the policy invariant to the order of teammates and of opponents. With E = `embed`:

    self [R, 20] -> hidden                          teammates [R, K, 5] -> E -> E -> pool -> 2E
    opponents [R, M, 5] -> E -> E -> pool -> 2E     concat [R, hidden + 4E] -> hidden -> 10

(`pool="attention"` gives E per type instead of 2E.) Mean+max pooling is the default: at
these sizes on the CPU it runs faster than attention, and imitated TeamBot about as well
(`scripts/bench_policy.py` measures the speed; figures: docs/benchmarks.md).

The layout of an observation is found from its width, `layout_from_obs_dim(D)` (inverting
`SoccerConfig.obs_layout`, which depends on the larger team size only, so asymmetric teams are
covered too); an explicit layout passed at construction takes precedence for its width.

    policy = SoccerPolicy(arch="entity")                     # or SoccerPolicy(env.config) for an MLP
    actions, logp = policy.act(obs)                         # [B, N], [B, N]; no graph is built
    logp, entropy = policy.logp_and_entropy(obs, actions)           # with grad, for the loss
    state, config = policy.state_dict(), policy.config_dict()   # a checkpoint (config is JSON)
    same = SoccerPolicy.from_config(config); same.load_state_dict(state)

Under `DistributedDataParallel`, call the wrapper for logits (`logits = ddp(obs)`) so gradients
are synchronised, and turn them into log-probs with `logp_entropy(logits, actions)`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from marl_grpo.envs.backend import resolve_device
from marl_grpo.envs.config import MAX_TEAM_SIZE, NUM_ACTIONS, SoccerConfig

ARCHS = ("mlp", "entity")
POOLS = ("meanmax", "attention")


def _sigmoid_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) = 2 sigmoid(2x) - 1 (one new tensor, then in place)."""
    return torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)


class _SigmoidTanh(torch.autograd.Function):
    """`_sigmoid_tanh`, with tanh's own backward from the output: 1 - y^2."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = _sigmoid_tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class Tanh(nn.Module):
    """`nn.Tanh`, faster on the CPU: there torch's float tanh kernel is slow, a large share
    of a rollout and of a GRPO update (docs/benchmarks.md), while 2 sigmoid(2x) - 1 (the identity
    tanh(x) = 2 sigmoid(2x) - 1) takes less than half the time; its error against the exact tanh
    is below 2e-7 (torch's: 3e-8), and the gradient is tanh's `1 - y^2`. Other devices use
    `torch.tanh`. No parameters: checkpoints are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return torch.tanh(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return _SigmoidTanh.apply(x)
        return _sigmoid_tanh(x)


CHUNK_ROWS = 8192
"""rows per pass when a network runs without grad on the CPU (see `rows_in_chunks`)"""


def rows_in_chunks(fn: Any, rows: torch.Tensor) -> torch.Tensor:
    """`fn(rows)` for rows [R, D], in passes of `CHUNK_ROWS` rows when no graph is built on the CPU.

    A pass over a whole batch (a PPO critic over 65k player-steps, a reference policy for the KL)
    writes activations of tens of MB, far beyond the CPU's caches, and its elementwise ops then run
    at memory speed; chunk by chunk they stay in cache, several times faster (docs/benchmarks.md).
    With grad (an update's minibatch) or on a GPU, one pass as usual.
    """
    if rows.shape[0] <= CHUNK_ROWS or torch.is_grad_enabled() or rows.device.type != "cpu":
        return fn(rows)
    return torch.cat([fn(chunk) for chunk in rows.split(CHUNK_ROWS)])


ACTIVATIONS = {"tanh": Tanh, "relu": nn.ReLU}
ACTIVATION_FLOOR = {"tanh": -1.0, "relu": 0.0}
"""the lowest value each activation gives: masked max pooling fills absent entities with it"""

SELF_FEATURES = (
    "self_pos", "self_vel", "ball_rel", "ball_vel", "ball_in_reach",
    "opp_goal_rel", "own_goal_rel", "time_left", "score", "team",
)
"""observation blocks the entity encoder reads as the agent's own features (not `slot`: its
width depends on the team size)"""
ENTITY_DIM = 5
"""features per teammate or opponent: relative position (2), velocity (2), present flag (1)"""
PRESENT_COLUMN = 4
"""index of the present flag within an entity block"""
COUNT_SCALE = 0.2
"""the numbers of present teammates and opponents enter the self features times this"""
SELF_DIM = sum(dict(SoccerConfig().observation_features())[name] for name in SELF_FEATURES) + 2
"""width of the entity encoder's self features: the SELF_FEATURES blocks (18) + 2 present counts"""
CONFIG_VERSION = 1


# --------------------------------------------------------------------------- layouts
@functools.lru_cache(maxsize=None)
def _layouts_by_dim() -> dict[int, dict[str, Any]]:
    """obs_dim -> layout for every symmetric team size 1..MAX_TEAM_SIZE (the source of truth is
    `SoccerConfig.obs_layout`, so a change to the observation is picked up here)."""
    table = {}
    for size in range(1, MAX_TEAM_SIZE + 1):
        layout = SoccerConfig(team_size=size).obs_layout()
        table[layout["dim"]] = layout
    return table


def layout_from_obs_dim(obs_dim: int) -> dict[str, Any]:
    """The observation layout (as `SoccerConfig.obs_layout()`) of observations `obs_dim` wide.

    The layout depends only on the larger team size M (obs_dim = 13 + 11 M with the current
    observation), so this covers asymmetric teams too. Raises ValueError naming the width if no
    team size from 1 to 11 gives it.
    """
    table = _layouts_by_dim()
    if obs_dim not in table:
        known = ", ".join(f"{dim} ({layout['num_opponents']} a side)" for dim, layout in sorted(table.items()))
        raise ValueError(
            f"observation width {obs_dim} matches no soccer team size; the widths are {known}"
        )
    return dict(table[obs_dim])


def _resolve_layout(spec: Any) -> dict[str, Any] | None:
    """A layout dict from a SoccerConfig, a layout dict, an obs_dim int, or None."""
    if spec is None:
        return None
    if isinstance(spec, SoccerConfig):
        return spec.obs_layout()
    if isinstance(spec, dict):
        missing = {"dim", "teammates", "opponents", *SELF_FEATURES} - set(spec)
        if missing:
            raise ValueError(f"the observation layout lacks the keys {sorted(missing)}; pass SoccerConfig.obs_layout()")
        return dict(spec)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return layout_from_obs_dim(int(spec))
    raise TypeError(
        f"expected a SoccerConfig, an obs_layout() dict, an obs_dim int or None, got {type(spec).__name__}"
    )


class _Parsed:
    """Where the entity encoder finds its inputs in observations of one width (cached)."""

    def __init__(self, layout: dict[str, Any]):
        self.dim = int(layout["dim"])
        columns = []
        for name in SELF_FEATURES:
            block = layout[name]
            columns.extend(range(block.start, block.stop))
        self.self_columns = torch.tensor(columns, dtype=torch.int64)
        self.teammates: slice = layout["teammates"]
        self.opponents: slice = layout["opponents"]
        self.num_teammates = (self.teammates.stop - self.teammates.start) // ENTITY_DIM
        self.num_opponents = (self.opponents.stop - self.opponents.start) // ENTITY_DIM
        self._on_device: dict[torch.device, torch.Tensor] = {}

    def columns_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._on_device:
            self._on_device[device] = self.self_columns.to(device)
        return self._on_device[device]


# --------------------------------------------------------------------------- distribution maths
def logp_entropy(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of `actions` and entropy of the categorical over `logits`.

    Args:
        logits: `[..., A]`.
        actions: int64 `[...]` in `[0, A)`.
    Returns:
        `(logp [...], entropy [...])`, differentiable with respect to `logits`.
    """
    if actions.shape != logits.shape[:-1]:
        raise ValueError(
            f"actions have shape {tuple(actions.shape)}, expected the observations' leading shape {tuple(logits.shape[:-1])}"
        )
    log_probs = torch.log_softmax(logits, dim=-1)
    logp = log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return logp, entropy


def sample_actions(logits: torch.Tensor, deterministic: bool = False, generator: torch.Generator | None = None,
                   shard: tuple[int, int] = (0, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one action per row of `logits [..., A]`; returns `(actions int64 [...], logp [...])`.

    Sampling uses the Gumbel-max trick, `argmax(logits - log E)` with `E = -log U ~ Exp(1)`, `U ~
    U[0, 1)` (exact; faster than `torch.multinomial` on large batches, and `uniform_` plus a log is
    several times faster than torch's `exponential_` on the CPU). `deterministic=True` takes the
    argmax. `generator` (on the logits' device) makes the draws reproducible. `shard = (index,
    count)`: `logits` is slice `index` of `count` equal slices (first dim) of a larger batch, and
    gets that slice of the larger batch's draws (a batch split over processes samples exactly as
    one process would).
    """
    log_probs = torch.log_softmax(logits, dim=-1)
    if deterministic:
        actions = log_probs.argmax(-1)
    else:
        index, count = shard
        uniform = log_probs.new_empty((count, *log_probs.shape)).uniform_(generator=generator)[index]
        actions = (log_probs - uniform.log_().neg_().log_()).argmax(-1)
    return actions, log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


# --------------------------------------------------------------------------- building blocks
def _linear(in_features: int, out_features: int, std: float = math.sqrt(2)) -> nn.Linear:
    """Orthogonal weights with gain `std`, zero bias (CleanRL's `layer_init`)."""
    layer = nn.Linear(in_features, out_features)
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, 0.0)
    return layer


class _AttentionPool(nn.Module):
    """Multi-head attention read-out of a set: the self embedding asks, the entities answer.

    A learned "nothing here" key/value is always present, so an empty set (1 a side, or every
    slot absent) reads a learned vector instead of a 0/0.
    """

    def __init__(self, query_dim: int, embed: int, heads: int):
        super().__init__()
        if embed % heads:
            raise ValueError(f"embed={embed} must be a multiple of heads={heads}")
        self.heads, self.head_dim = heads, embed // heads
        self.query = _linear(query_dim, embed, 1.0)
        self.key_value = _linear(embed, 2 * embed, 1.0)
        self.null_key_value = nn.Parameter(torch.zeros(2, heads, self.head_dim))
        self.out = _linear(embed, embed, 1.0)

    def forward(self, query: torch.Tensor, entities: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """query [R, Q], entities [R, K, E], present bool [R, K] -> [R, E].

        Written out by hand: with one query and a handful of keys per row, elementwise products
        are several times faster on the CPU than `scaled_dot_product_attention`'s batched matmuls.
        """
        rows, count, _ = entities.shape
        heads, head_dim = self.heads, self.head_dim
        q = self.query(query).view(rows, 1, heads, head_dim) * head_dim ** -0.5
        key_value = self.key_value(entities).view(rows, count, 2, heads, head_dim)
        keys, values = key_value[:, :, 0], key_value[:, :, 1]            # [R, K, H, dh]
        null_key, null_value = self.null_key_value                         # [H, dh]
        scores = (keys * q).sum(-1).masked_fill(~present.unsqueeze(-1), -torch.inf)  # [R, K, H]
        scores = torch.cat([(q[:, 0] * null_key).sum(-1, keepdim=True).transpose(1, 2), scores], 1)
        weights = torch.softmax(scores, 1).unsqueeze(-1)                   # [R, 1 + K, H, 1]
        read = weights[:, 0] * null_value + (weights[:, 1:] * values).sum(1)  # [R, H, dh]
        return self.out(read.reshape(rows, heads * head_dim))


def _mean_max_pool(entities: torch.Tensor, present: torch.Tensor, floor: float) -> torch.Tensor:
    """Masked mean and max over a set: entities [R, K, E], present bool [R, K] -> [R, 2E].

    `floor` is the activation's lower bound (0 for ReLU, -1 for tanh): absent entities are
    filled with it before the max, so they never win it (an empty set's max is the floor), and
    they carry weight 0 in the mean (an empty set's mean is 0).
    """
    rows, count, embed = entities.shape
    if count == 0:
        return torch.cat([entities.new_zeros(rows, embed), entities.new_full((rows, embed), floor)], -1)
    weight = present.to(entities.dtype).unsqueeze(1)                   # [R, 1, K]
    mean = torch.bmm(weight, entities).squeeze(1) / weight.sum(-1).clamp(min=1.0)
    largest = entities.masked_fill(~present.unsqueeze(-1), floor).amax(1)
    return torch.cat([mean, largest], -1)


# --------------------------------------------------------------------------- the policy
class SoccerPolicy(nn.Module):
    """One shared policy network for every soccer player; logits over Discrete(10).

    Args:
        layout: the observations it will see: a `SoccerConfig`, a `config.obs_layout()` dict or an
            obs_dim int. Required for `arch="mlp"` (its input width is fixed). Optional for
            `arch="entity"`, which parses any width from 1 to 11 a side; a layout given here
            takes precedence for observations of its width.
        arch: `"mlp"` or `"entity"` (see the module docstring).
        hidden: width of the hidden layers.
        embed: entity embedding width (`"entity"` only); default `hidden // 4` (32 imitated TeamBot
            as well as 64 and runs faster).
        pool: `"meanmax"` (DeepSets) or `"attention"` (`"entity"` only).
        heads: attention heads (`pool="attention"` only).
        activation: `"tanh"` (CleanRL's choice; it also imitated TeamBot a little better than ReLU
            in the entity encoder, at the same speed) or `"relu"`.
        num_actions: only for an env other than soccer (`marl-grpo train --env vmas:...`): its
            `Discrete(num_actions)` actions; `layout` is then that env's observation width (an int)
            and the policy a plain MLP (`arch="mlp"`).
        device: where the weights live; `"auto"` picks CUDA when present.

    Shapes: observations `[..., D]` float32 (any leading shape, tensors or numpy arrays);
    logits `[..., 10]` (`[..., num_actions]`); actions and log-probs `[...]`.
    """

    def __init__(self, layout: SoccerConfig | dict[str, Any] | int | None = None, arch: str = "mlp",
                 hidden: int = 128, *, embed: int | None = None, pool: str = "meanmax", heads: int = 4,
                 activation: str = "tanh", num_actions: int | None = None, device: Any = "auto"):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch={arch!r} is invalid: expected one of {ARCHS}")
        if pool not in POOLS:
            raise ValueError(f"pool={pool!r} is invalid: expected one of {POOLS}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is invalid: expected one of {tuple(ACTIVATIONS)}")
        for name, value in (("hidden", hidden), ("heads", heads)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid: expected an int >= 1")
        if embed is not None and (not isinstance(embed, int) or isinstance(embed, bool) or embed < 1):
            raise ValueError(f"embed={embed!r} is invalid: expected None or an int >= 1")
        self.plain = num_actions is not None
        """an MLP over another env's observations (`--env vmas:...`): no soccer layout"""
        if self.plain:
            if arch != "mlp" or isinstance(layout, bool) or not isinstance(layout, (int, np.integer)) or layout < 1:
                raise ValueError(f"num_actions={num_actions!r} (an env other than soccer) needs arch='mlp' and the "
                                 f"observation width as layout, got arch={arch!r}, layout={layout!r}")
            if isinstance(num_actions, bool) or not isinstance(num_actions, (int, np.integer)) or num_actions < 2:
                raise ValueError(f"num_actions={num_actions!r} is invalid: expected an int >= 2")
        self.num_actions = int(num_actions) if self.plain else NUM_ACTIONS
        self.layout = {"dim": int(layout)} if self.plain else _resolve_layout(layout)
        if arch == "mlp" and self.layout is None:
            raise ValueError(
                "arch='mlp' has a fixed input width: pass the observation layout "
                "(a SoccerConfig, config.obs_layout() or obs_dim), or use arch='entity'"
            )
        self.arch, self.hidden, self.pool, self.heads, self.activation = arch, hidden, pool, heads, activation
        self.embed = (embed if embed is not None else max(hidden // 4, 1)) if arch == "entity" else None
        act = ACTIVATIONS[activation]

        if arch == "mlp":
            self.obs_dim = int(self.layout["dim"])
            self.body = nn.Sequential(
                _linear(self.obs_dim, hidden), act(),
                _linear(hidden, hidden), act(),
            )
        else:
            self.obs_dim = int(self.layout["dim"]) if self.layout is not None else None
            E = self.embed
            self.self_encoder = nn.Sequential(_linear(SELF_DIM, hidden), act())
            self.teammate_encoder = nn.Sequential(_linear(ENTITY_DIM, E), act(), _linear(E, E), act())
            self.opponent_encoder = nn.Sequential(_linear(ENTITY_DIM, E), act(), _linear(E, E), act())
            if pool == "attention":
                self.teammate_pool = _AttentionPool(hidden, E, heads)
                self.opponent_pool = _AttentionPool(hidden, E, heads)
                pooled = 2 * E
            else:
                pooled = 4 * E
            self.body = nn.Sequential(_linear(hidden + pooled, hidden), act())
            self._parsed: dict[int, _Parsed] = {}
            if self.layout is not None:
                self._parsed[self.obs_dim] = _Parsed(self.layout)
        self.head = _linear(hidden, self.num_actions, 0.01)
        self.to(resolve_device(device))

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ forward
    def _as_obs(self, obs: Any) -> torch.Tensor:
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        if obs.dim() == 0:
            raise ValueError("observations must have shape [..., D], got a scalar")
        return obs

    def forward(self, obs: Any) -> torch.Tensor:
        """Action logits: obs `[..., D]` -> `[..., 10]`."""
        obs = self._as_obs(obs)
        width = obs.shape[-1]
        rows = obs.reshape(-1, width)
        if self.arch == "mlp" and width != self.obs_dim:
            raise ValueError(
                f"observation width {width} does not match this MLP policy's obs_dim {self.obs_dim} "
                "(another team size?); an MLP plays only the layout it was built for, arch='entity' plays any"
            )
        features = self.body if self.arch == "mlp" else self._entity_features
        logits = rows_in_chunks(lambda x: self.head(features(x)), rows)
        return logits.reshape(*obs.shape[:-1], self.num_actions)

    @staticmethod
    def stack_weights(policies: list[SoccerPolicy]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The layers of K MLP policies of one architecture (`arch="mlp"`, same widths and
        activation), stacked along a leading axis K for `forward_many`: per linear layer,
        `(weight [K, in, out], bias [K, 1, out])`, detached (a frozen copy: later updates of the
        policies do not reach it)."""
        if not policies or any(p.arch != "mlp" for p in policies):
            raise ValueError(f"stack_weights takes one or more arch='mlp' policies, got archs "
                             f"{[p.arch for p in policies]}")
        shapes = {(p.obs_dim, p.hidden, p.activation) for p in policies}
        if len(shapes) > 1:
            raise ValueError(f"stack_weights needs policies of one architecture, got (obs_dim, hidden, activation) "
                             f"{sorted(shapes)}")
        layers = [(p.body[0], p.body[2], p.head) for p in policies]
        return [(torch.stack([ls[i].weight.detach().T for ls in layers]),
                 torch.stack([ls[i].bias.detach()[None] for ls in layers])) for i in range(3)]

    def forward_many(self, weights: list[tuple[torch.Tensor, torch.Tensor]], obs: torch.Tensor) -> torch.Tensor:
        """The logits of K policies at once, each on its own rows: obs `[K, R, D]` -> `[K, R, 10]`.

        `weights` from `stack_weights` (of policies with this one's architecture; this one gives
        the activation). One batched matmul per layer (`baddbmm`) over the K policies instead of
        K forwards: the maths of `forward` (linear, activation, linear, activation, head), equal
        up to float rounding. Builds a graph only if the weights require grad (they do not).
        """
        activation = self.body[1]
        h = obs
        for i, (weight, bias) in enumerate(weights):
            h = torch.baddbmm(bias, h, weight)
            if i < len(weights) - 1:
                h = activation(h)
        return h

    def _parse(self, width: int) -> _Parsed:
        parsed = self._parsed.get(width)
        if parsed is None:
            parsed = self._parsed[width] = _Parsed(layout_from_obs_dim(width))
        return parsed

    def _entity_features(self, rows: torch.Tensor) -> torch.Tensor:
        """rows [R, D] -> [R, hidden], the entity encoder's input to the head."""
        parsed = self._parse(rows.shape[-1])
        R = rows.shape[0]
        mates = rows[:, parsed.teammates].reshape(R, parsed.num_teammates, ENTITY_DIM)
        opps = rows[:, parsed.opponents].reshape(R, parsed.num_opponents, ENTITY_DIM)
        mates_present = mates[..., PRESENT_COLUMN] > 0.5
        opps_present = opps[..., PRESENT_COLUMN] > 0.5
        counts = torch.stack([mates_present.sum(-1), opps_present.sum(-1)], -1).to(rows.dtype) * COUNT_SCALE
        own = torch.cat([rows.index_select(1, parsed.columns_on(rows.device)), counts], -1)
        own = self.self_encoder(own)
        mates = self.teammate_encoder(mates)
        opps = self.opponent_encoder(opps)
        if self.pool == "attention":
            pooled = [self.teammate_pool(own, mates, mates_present), self.opponent_pool(own, opps, opps_present)]
        else:
            floor = ACTIVATION_FLOOR[self.activation]
            pooled = [_mean_max_pool(mates, mates_present, floor), _mean_max_pool(opps, opps_present, floor)]
        return self.body(torch.cat([own, *pooled], -1))

    # ------------------------------------------------------------------ acting and learning
    def act(self, obs: Any, deterministic: bool = False, generator: torch.Generator | None = None,
            shard: tuple[int, int] = (0, 1)) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample (or, deterministic, take the argmax of) an action for every row.

        Runs under `torch.no_grad()`: acting builds no graph; the learner recomputes log-probs
        with `logp_and_entropy`. Returns `(actions int64 [...], logp [...])` on the policy's device.
        `generator` (a `torch.Generator` on that device) makes the draws reproducible; `shard`
        as in `sample_actions`.
        """
        with torch.no_grad():
            return sample_actions(self(obs), deterministic, generator, shard)

    def logp_and_entropy(self, obs: Any, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability of `actions` and the policy entropy, with grad: `(logp [...], entropy [...])`.

        obs `[..., D]`, actions int64 `[...]` (the same leading shape).
        """
        actions = torch.as_tensor(actions, device=self.device)
        if actions.dtype.is_floating_point or actions.dtype == torch.bool:
            raise TypeError(f"actions must be integer action indices, got dtype {actions.dtype}")
        # checked on the device, without waiting for it (no host sync on the update's hot path)
        torch._assert_async(((actions >= 0) & (actions < self.num_actions)).all(),
                            f"actions must lie in [0, {self.num_actions - 1}] (Discrete({self.num_actions}))")
        return logp_entropy(self(obs), actions)

    # ------------------------------------------------------------------ checkpoints
    def config_dict(self) -> dict[str, Any]:
        """JSON-friendly constructor arguments: `SoccerPolicy.from_config(d)` rebuilds the same
        architecture (load the `state_dict` for the same weights)."""
        return {
            "version": CONFIG_VERSION,
            "arch": self.arch,
            "hidden": self.hidden,
            "embed": self.embed,
            "pool": self.pool,
            "heads": self.heads,
            "activation": self.activation,
            "obs_dim": self.obs_dim,
            "max_team": None if self.layout is None or self.plain else int(self.layout["num_opponents"]),
            "num_actions": self.num_actions,
            "plain": self.plain,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], device: Any = "auto") -> "SoccerPolicy":
        """Rebuild a policy from `config_dict()` (fresh weights; load the state_dict after)."""
        config = dict(config)
        known = {"version", "arch", "hidden", "embed", "pool", "heads", "activation", "obs_dim", "max_team", "num_actions",
                 "plain"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown policy config key(s) {unknown}; expected keys from {sorted(known)}")
        if config.get("version", CONFIG_VERSION) != CONFIG_VERSION:
            raise ValueError(f"policy config version {config['version']} is not supported (expected {CONFIG_VERSION})")
        if config.get("plain"):  # another env's MLP
            return cls(config["obs_dim"], hidden=config.get("hidden", 128), activation=config.get("activation", "tanh"),
                       num_actions=config["num_actions"], device=device)
        if config.get("num_actions", NUM_ACTIONS) != NUM_ACTIONS:
            raise ValueError(f"the checkpoint has {config['num_actions']} actions, the soccer env has {NUM_ACTIONS}")
        obs_dim = config.get("obs_dim")
        layout = layout_from_obs_dim(obs_dim) if obs_dim is not None else None
        if layout is not None and config.get("max_team") not in (None, layout["num_opponents"]):
            raise ValueError(f"policy config is inconsistent: obs_dim={obs_dim} but max_team={config['max_team']}")
        return cls(
            layout,
            arch=config.get("arch", "mlp"),
            hidden=config.get("hidden", 128),
            embed=config.get("embed"),
            pool=config.get("pool", "meanmax"),
            heads=config.get("heads", 4),
            activation=config.get("activation", "tanh"),
            device=device,
        )

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, obs_dim={self.obs_dim}, parameters={self.num_parameters()}"


__all__ = [
    "ARCHS",
    "POOLS",
    "SoccerPolicy",
    "layout_from_obs_dim",
    "logp_entropy",
    "sample_actions",
]
