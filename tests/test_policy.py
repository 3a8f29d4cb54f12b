"""The shared soccer policy: shapes, distribution maths, the entity encoder's set properties,
team-size independence, checkpoint round-trip, and that gradients move it."""

import json
import math

import numpy as np
import pytest
import torch

from marl_grpo.agents import SoccerPolicy, layout_from_obs_dim, logp_entropy, sample_actions
from marl_grpo.envs import NUM_ACTIONS, SoccerConfig, SoccerVecEnv

VARIANTS = [
    pytest.param({"arch": "mlp"}, id="mlp"),
    pytest.param({"arch": "entity", "pool": "meanmax"}, id="entity-meanmax"),
    pytest.param({"arch": "entity", "pool": "attention"}, id="entity-attention"),
    pytest.param({"arch": "entity", "pool": "meanmax", "activation": "relu"}, id="entity-meanmax-relu"),
]
ENTITY_VARIANTS = [v for v in VARIANTS if v.values[0]["arch"] == "entity"]


def env_obs(device: str, team_size: int = 2, num_envs: int = 4, steps: int = 5, seed: int = 0,
            **kwargs) -> tuple[torch.Tensor, SoccerConfig]:
    """Observations [B, N, D] of a real vector env on `device`, a few random steps after kickoff
    (so that velocities are non-zero), and its config."""
    env = SoccerVecEnv(num_envs=num_envs, device=device, team_size=team_size, **kwargs)
    obs = env.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        obs, *_ = env.step(torch.randint(0, NUM_ACTIONS, (num_envs, env.num_agents), generator=generator))
    return obs, env.config


def make_policy(variant: dict, config: SoccerConfig, device: str, seed: int = 0, **kwargs) -> SoccerPolicy:
    torch.manual_seed(seed)
    layout = config if variant["arch"] == "mlp" else None
    return SoccerPolicy(layout, device=device, **variant, **kwargs)


def randomize_head(policy: SoccerPolicy, seed: int = 1) -> None:
    """The default head init (std 0.01) gives near-uniform logits; make them sharp so that
    comparisons mean something."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        policy.head.weight.copy_(torch.randn(policy.head.weight.shape, generator=generator))


# --------------------------------------------------------------------------- layouts
@pytest.mark.parametrize("team_size", range(1, 12))
def test_layout_from_obs_dim_inverts_obs_layout(team_size):
    layout = SoccerConfig(team_size=team_size).obs_layout()
    assert layout["dim"] == 13 + 11 * team_size
    assert layout_from_obs_dim(layout["dim"]) == layout


def test_layout_from_obs_dim_covers_asymmetric_teams():
    config = SoccerConfig(blue_size=2, red_size=3)
    assert layout_from_obs_dim(config.obs_dim) == config.obs_layout()


@pytest.mark.parametrize("width", [0, 23, 36, 45, 145])
def test_layout_from_obs_dim_rejects_other_widths(width):
    with pytest.raises(ValueError, match=f"observation width {width} matches no soccer team size"):
        layout_from_obs_dim(width)


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes_for_batched_and_flat_observations(variant, device):
    obs, config = env_obs(device, team_size=2)
    policy = make_policy(variant, config, device)
    B, N, D = obs.shape
    assert policy(obs).shape == (B, N, NUM_ACTIONS)
    actions, logp = policy.act(obs)
    assert actions.shape == (B, N) and actions.dtype == torch.int64
    assert logp.shape == (B, N) and logp.dtype == torch.float32
    assert int(actions.min()) >= 0 and int(actions.max()) < NUM_ACTIONS
    logp2, entropy = policy.logp_and_entropy(obs, actions)
    assert logp2.shape == (B, N) and entropy.shape == (B, N)

    flat = obs.reshape(B * N, D)
    actions, logp = policy.act(flat)
    assert actions.shape == (B * N,) and logp.shape == (B * N,)
    assert policy(flat[0]).shape == (NUM_ACTIONS,)
    # one batched forward equals the per-row forwards
    torch.testing.assert_close(policy(flat), torch.stack([policy(row) for row in flat]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(policy(obs), policy(flat).reshape(B, N, NUM_ACTIONS))


@pytest.mark.parametrize("variant", VARIANTS)
def test_accepts_numpy_observations(variant, device):
    obs, config = env_obs(device, team_size=2)
    policy = make_policy(variant, config, device)
    torch.testing.assert_close(policy(obs.cpu().numpy()), policy(obs))
    actions, _ = policy.act(obs.cpu().numpy().astype(np.float64), deterministic=True)
    assert torch.equal(actions, policy.act(obs, deterministic=True)[0])


# --------------------------------------------------------------------------- distribution maths
@pytest.mark.parametrize("variant", VARIANTS)
def test_act_logp_is_log_softmax_at_the_action_and_matches_logp_and_entropy(variant, device):
    obs, config = env_obs(device, team_size=2, num_envs=64)
    policy = make_policy(variant, config, device)
    randomize_head(policy)
    actions, logp = policy.act(obs, generator=torch.Generator(device=device).manual_seed(3))
    expected = torch.log_softmax(policy(obs), -1).gather(-1, actions[..., None])[..., 0]
    torch.testing.assert_close(logp, expected, rtol=1e-6, atol=1e-6)
    logp2, entropy = policy.logp_and_entropy(obs, actions)
    torch.testing.assert_close(logp2, logp, rtol=1e-6, atol=1e-6)
    probs = torch.softmax(policy(obs), -1)
    torch.testing.assert_close(entropy, -(probs * probs.log()).sum(-1), rtol=1e-5, atol=1e-5)
    # and with torch's own Categorical
    dist = torch.distributions.Categorical(logits=policy(obs))
    torch.testing.assert_close(logp2, dist.log_prob(actions), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy, dist.entropy(), rtol=1e-5, atol=1e-5)


def test_act_builds_no_graph_and_evaluate_does(device):
    obs, config = env_obs(device, team_size=2)
    policy = make_policy({"arch": "entity"}, config, device)
    actions, logp = policy.act(obs)
    assert not logp.requires_grad and logp.grad_fn is None
    logp, entropy = policy.logp_and_entropy(obs, actions)
    assert logp.requires_grad and entropy.requires_grad


@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_head_gives_uniform_policy_with_entropy_log10(variant, device):
    obs, config = env_obs(device, team_size=2)
    policy = make_policy(variant, config, device)
    with torch.no_grad():
        policy.head.weight.zero_()
        policy.head.bias.zero_()
    actions, logp = policy.act(obs)
    torch.testing.assert_close(logp, torch.full_like(logp, -math.log(NUM_ACTIONS)))
    _, entropy = policy.logp_and_entropy(obs, actions)
    torch.testing.assert_close(entropy, torch.full_like(entropy, math.log(NUM_ACTIONS)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_deterministic_act_is_argmax(variant, device):
    obs, config = env_obs(device, team_size=3, num_envs=32)
    policy = make_policy(variant, config, device)
    randomize_head(policy)
    actions, logp = policy.act(obs, deterministic=True)
    logits = policy(obs)
    assert torch.equal(actions, logits.argmax(-1))
    torch.testing.assert_close(logp, torch.log_softmax(logits, -1).amax(-1))


def test_sampling_follows_the_probabilities_and_the_generator(device):
    logits = torch.tensor([[2.0, 0.0, -1.0, 1.0, -50.0, 0.5, 0.0, 0.0, -2.0, 1.5]], device=device)
    rows = logits.expand(200_000, -1)
    actions, _ = sample_actions(rows, generator=torch.Generator(device=device).manual_seed(0))
    frequencies = torch.bincount(actions, minlength=NUM_ACTIONS).float() / rows.shape[0]
    probs = torch.softmax(logits[0], -1)
    # 200k draws: the standard error is below 0.0012 for every action
    torch.testing.assert_close(frequencies, probs, rtol=0, atol=0.005)
    assert int(frequencies[4]) == 0
    again, _ = sample_actions(rows[:1000], generator=torch.Generator(device=device).manual_seed(0))
    assert torch.equal(again, actions[:1000])


def test_logp_entropy_rejects_mismatched_actions():
    with pytest.raises(ValueError, match="actions have shape"):
        logp_entropy(torch.zeros(4, 3, NUM_ACTIONS), torch.zeros(4, dtype=torch.int64))


# --------------------------------------------------------------------------- the entity encoder
@pytest.mark.parametrize("variant", ENTITY_VARIANTS)
def test_entity_policy_plays_2v2_and_3v3_with_the_same_weights(variant, device):
    obs2, config2 = env_obs(device, team_size=2)
    obs3, config3 = env_obs(device, team_size=3)
    assert (obs2.shape[-1], obs3.shape[-1]) == (35, 46)
    policy = make_policy(variant, config2, device)
    state = {k: v.clone() for k, v in policy.state_dict().items()}
    for obs in (obs2, obs3, obs2):
        actions, logp = policy.act(obs)
        assert actions.shape == obs.shape[:-1] and torch.isfinite(logp).all()
        logp2, entropy = policy.logp_and_entropy(obs, actions)
        torch.testing.assert_close(logp2, logp)
        assert torch.isfinite(entropy).all()
    for key, value in policy.state_dict().items():
        assert torch.equal(value, state[key])
    # 1 a side has no teammates at all, 11 a side has ten
    for team_size in (1, 11):
        obs, _ = env_obs(device, team_size=team_size, num_envs=2, steps=1)
        assert torch.isfinite(policy(obs)).all()


@pytest.mark.parametrize("variant", ENTITY_VARIANTS)
def test_entity_policy_ignores_the_slot_one_hot(variant, device):
    obs, config = env_obs(device, team_size=3)
    policy = make_policy(variant, config, device)
    randomize_head(policy)
    changed = obs.clone()
    changed[..., config.obs_layout()["slot"]] = torch.randn(changed[..., config.obs_layout()["slot"]].shape)
    torch.testing.assert_close(policy(changed), policy(obs), rtol=0, atol=0)


def permute_entities(obs: torch.Tensor, block: slice, order: list[int]) -> torch.Tensor:
    """obs with the 5-wide entity blocks inside `block` reordered by `order`."""
    out = obs.clone()
    entities = obs[..., block].reshape(*obs.shape[:-1], len(order), 5)
    out[..., block] = entities[..., order, :].reshape(*obs.shape[:-1], -1)
    return out


@pytest.mark.parametrize("variant", ENTITY_VARIANTS)
@pytest.mark.parametrize("which, order", [("opponents", [2, 0, 1]), ("opponents", [1, 2, 0]), ("teammates", [1, 0])])
def test_entity_policy_is_invariant_to_the_order_of_entities(variant, which, order, device):
    obs, config = env_obs(device, team_size=3, num_envs=16)
    policy = make_policy(variant, config, device)
    randomize_head(policy)
    permuted = permute_entities(obs, config.obs_layout()[which], order)
    assert not torch.equal(permuted, obs)
    torch.testing.assert_close(policy(permuted), policy(obs), rtol=0, atol=1e-5)
    # ... which the MLP is not
    mlp = make_policy({"arch": "mlp"}, config, device)
    randomize_head(mlp)
    assert (mlp(permuted) - mlp(obs)).abs().max() > 1e-3


@pytest.mark.parametrize("variant", ENTITY_VARIANTS)
def test_entity_policy_ignores_absent_entities(variant, device):
    # 2 blue vs 3 red: M = 3, so each blue sees one absent teammate slot, each red one absent opponent
    obs, config = env_obs(device, team_size=2, blue_size=2, red_size=3, num_envs=8)
    layout = config.obs_layout()
    policy = make_policy(variant, config, device)
    randomize_head(policy)
    blue, red = obs[:, :2], obs[:, 2:]
    mates = blue[..., layout["teammates"]].reshape(8, 2, 2, 5).cpu()
    assert torch.equal(mates[..., 1, 4], torch.zeros(8, 2)) and torch.equal(mates[..., 0, 4], torch.ones(8, 2))
    opps = red[..., layout["opponents"]].reshape(8, 3, 3, 5).cpu()
    assert torch.equal(opps[..., 2, 4], torch.zeros(8, 3))

    changed = obs.clone()
    generator = torch.Generator().manual_seed(0)
    t0 = layout["teammates"].start + 5   # blue's absent teammate slot (the second): features 0..3
    changed[:, :2, t0:t0 + 4] = 3 * torch.randn(8, 2, 4, generator=generator)
    o2 = layout["opponents"].start + 10  # red's absent opponent slot (the third)
    changed[:, 2:, o2:o2 + 4] = 3 * torch.randn(8, 3, 4, generator=generator)
    assert not torch.equal(changed, obs)
    torch.testing.assert_close(policy(changed), policy(obs), rtol=0, atol=1e-6)
    # a present entity's features do matter
    moved = obs.clone()
    moved[:, :2, layout["teammates"].start] += 0.5
    assert (policy(moved)[:, :2] - policy(obs)[:, :2]).abs().max() > 1e-3


@pytest.mark.parametrize("variant", ENTITY_VARIANTS)
def test_entity_policy_same_output_for_the_same_match_in_a_bigger_layout(variant, device):
    """A 2v2 observation padded into the 3v3 layout (absent third players) is the same match:
    the entity policy must give the same logits."""
    obs2, config2 = env_obs(device, team_size=2)
    config3 = SoccerConfig(team_size=3)
    l2, l3 = config2.obs_layout(), config3.obs_layout()
    padded = torch.zeros(*obs2.shape[:-1], l3["dim"])
    for name in ("self_pos", "self_vel", "ball_rel", "ball_vel", "ball_in_reach", "opp_goal_rel",
                 "own_goal_rel", "time_left", "score", "team"):
        padded[..., l3[name]] = obs2[..., l2[name]]
    padded[..., l3["teammates"].start:l3["teammates"].start + 5] = obs2[..., l2["teammates"]]
    padded[..., l3["opponents"].start:l3["opponents"].start + 10] = obs2[..., l2["opponents"]]
    padded[..., l3["slot"].start:l3["slot"].start + 2] = obs2[..., l2["slot"]]
    policy = make_policy(variant, config2, device)
    randomize_head(policy)
    torch.testing.assert_close(policy(padded), policy(obs2), rtol=0, atol=1e-5)


def test_explicit_layout_takes_precedence_for_its_width(device):
    obs, config = env_obs(device, team_size=3)
    torch.manual_seed(0)
    inferred = SoccerPolicy(arch="entity", device=device)
    torch.manual_seed(0)
    explicit = SoccerPolicy(config, arch="entity", device=device)
    torch.testing.assert_close(explicit(obs), inferred(obs))
    assert explicit.config_dict()["obs_dim"] == 46 and inferred.config_dict()["obs_dim"] is None


# --------------------------------------------------------------------------- bad input
def test_wrong_width_raises_a_clear_error(device):
    obs3, config3 = env_obs(device, team_size=3)
    mlp = make_policy({"arch": "mlp"}, SoccerConfig(team_size=2), device)
    with pytest.raises(ValueError, match="observation width 46 does not match this MLP policy's obs_dim 35"):
        mlp(obs3)
    entity = make_policy({"arch": "entity"}, config3, device)
    with pytest.raises(ValueError, match="observation width 40 matches no soccer team size"):
        entity(torch.zeros(3, 40))
    with pytest.raises(ValueError, match="observation width 45 matches no soccer team size"):
        entity.act(obs3[..., :-1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"arch": "mlp"}, "arch='mlp' has a fixed input width"),
        ({"arch": "cnn"}, "arch='cnn' is invalid"),
        ({"arch": "entity", "pool": "sum"}, "pool='sum' is invalid"),
        ({"arch": "entity", "activation": "gelu"}, "activation='gelu' is invalid"),
        ({"arch": "entity", "hidden": 0}, "hidden=0 is invalid"),
        ({"arch": "entity", "pool": "attention", "embed": 30, "heads": 4}, "embed=30 must be a multiple of heads=4"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SoccerPolicy(device="cpu", **kwargs)


def test_bad_layout_type_raises():
    with pytest.raises(TypeError, match="expected a SoccerConfig"):
        SoccerPolicy("2v2", device="cpu")
    with pytest.raises(ValueError, match="observation width 36"):
        SoccerPolicy(36, device="cpu")


def test_evaluate_rejects_actions_of_another_shape(device):
    obs, config = env_obs(device, team_size=2)
    policy = make_policy({"arch": "mlp"}, config, device)
    with pytest.raises(ValueError, match=r"actions have shape \(4,\), expected the observations' leading shape \(4, 4\)"):
        policy.logp_and_entropy(obs, torch.zeros(4, dtype=torch.int64))


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("variant", VARIANTS)
def test_config_round_trip_rebuilds_an_identical_network(variant, device):
    obs, config = env_obs(device, team_size=2)
    policy = make_policy(variant, config, device, hidden=32)
    randomize_head(policy)
    saved = json.loads(json.dumps(policy.config_dict()))  # as a checkpoint's config.json would
    torch.manual_seed(123)  # different initial weights
    rebuilt = SoccerPolicy.from_config(saved, device=device)
    assert rebuilt.config_dict() == policy.config_dict()
    assert rebuilt.num_parameters() == policy.num_parameters()
    assert not torch.equal(rebuilt(obs), policy(obs))
    rebuilt.load_state_dict(policy.state_dict())
    assert torch.equal(rebuilt(obs), policy(obs))


def test_from_config_rejects_bad_configs():
    config = SoccerPolicy(arch="entity", device="cpu").config_dict()
    with pytest.raises(ValueError, match=r"unknown policy config key\(s\) \['hiden'\]"):
        SoccerPolicy.from_config({**config, "hiden": 64})
    with pytest.raises(ValueError, match="the checkpoint has 5 actions"):
        SoccerPolicy.from_config({**config, "num_actions": 5})
    with pytest.raises(ValueError, match="obs_dim=35 but max_team=3"):
        SoccerPolicy.from_config({**config, "obs_dim": 35, "max_team": 3})


def test_num_parameters():
    policy = SoccerPolicy(SoccerConfig(team_size=2), arch="mlp", hidden=128, device="cpu")
    assert policy.num_parameters() == (35 * 128 + 128) + (128 * 128 + 128) + (128 * 10 + 10)
    policy.head.bias.requires_grad_(False)
    assert policy.num_parameters(trainable_only=True) == policy.num_parameters() - 10


# --------------------------------------------------------------------------- learning and devices
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradient_steps_raise_the_probability_of_a_chosen_action(variant, device):
    obs, config = env_obs(device, team_size=2)
    policy = make_policy(variant, config, device)
    target = torch.full(obs.shape[:-1], 9, dtype=torch.int64)  # kick, everywhere
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    before, _ = policy.logp_and_entropy(obs, target)
    for _ in range(5):
        logp, _ = policy.logp_and_entropy(obs, target)
        optimizer.zero_grad()
        (-logp.mean()).backward()
        optimizer.step()
    after, _ = policy.logp_and_entropy(obs, target)
    assert before.exp().mean() < 0.15
    assert after.exp().mean() > before.exp().mean() + 0.3
    assert (after > before).all()
    for name, parameter in policy.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_device_auto_resolves_to_cpu_without_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    policy = SoccerPolicy(arch="entity")
    assert policy.device.type == expected
    assert SoccerPolicy(arch="entity", device="auto").device.type == expected
    obs, _ = env_obs("cpu", team_size=2)
    actions, logp = policy.act(obs)  # CPU observations are moved to the policy's device
    assert actions.device.type == expected and logp.device.type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            SoccerPolicy(arch="entity", device="cuda")


def test_fast_tanh_matches_torch_tanh_and_its_gradient():
    """The CPU activation (2 sigmoid(2x) - 1) against torch.tanh: values, gradients, saturation."""
    from marl_grpo.agents.policy import Tanh

    x = torch.cat([torch.linspace(-30, 30, 10001), torch.tensor([0.0, -0.0, 1e-8, -1e-8])]).requires_grad_()
    reference = x.detach().clone().requires_grad_()
    y, y_ref = Tanh()(x), torch.tanh(reference)
    assert (y - y_ref).abs().max() < 3e-7
    assert y[0] == -1.0 and y[10000] == 1.0  # saturates exactly
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    (y * weights).sum().backward()
    (y_ref * weights).sum().backward()
    assert (x.grad - reference.grad).abs().max() < 1e-6
    with torch.no_grad():
        assert torch.equal(Tanh()(x), y.detach())  # the inference path computes the same numbers


def test_big_no_grad_passes_run_in_chunks_with_the_same_values(monkeypatch):
    """Without grad on the CPU, policy and critic run big batches chunk by chunk (cache-sized):
    the same logits and values as one pass, to float rounding; with grad, one pass."""
    import marl_grpo.agents.policy as policy_module
    from marl_grpo.agents.critic import SoccerCritic

    config = SoccerConfig(team_size=2)
    policy, critic = SoccerPolicy(config, device="cpu"), SoccerCritic(config, device="cpu")
    obs = torch.randn(5000, config.obs_dim, generator=torch.Generator().manual_seed(0))
    inputs = torch.randn(50, 100, critic.input_dim, generator=torch.Generator().manual_seed(1))
    calls = []
    original = policy.head.forward
    monkeypatch.setattr(policy.head, "forward", lambda x: calls.append(x.shape[0]) or original(x))
    with torch.no_grad():
        whole_logits, whole_values = policy(obs), critic(inputs)
        monkeypatch.setattr(policy_module, "CHUNK_ROWS", 1024)
        logits, values = policy(obs), critic(inputs)
    assert calls == [5000, 1024, 1024, 1024, 1024, 904]
    torch.testing.assert_close(logits, whole_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(values, whole_values, rtol=0, atol=1e-5)
    assert values.shape == (50, 100)
    calls.clear()
    policy(obs).sum().backward()  # with grad: one pass (the graph of a minibatch)
    assert calls == [5000]


def test_forward_many_gives_each_policy_its_own_logits():
    """K MLP policies stacked by `stack_weights` act together in `forward_many`, each on its own
    rows, as each would alone; other architectures or widths are refused."""
    config = SoccerConfig(team_size=2)
    torch.manual_seed(0)
    policies = [SoccerPolicy(config, hidden=16, device="cpu") for _ in range(3)]
    obs = torch.randn(3, 5, config.obs_dim)  # [K, R, D]
    weights = SoccerPolicy.stack_weights(policies)
    with torch.no_grad():
        together = policies[0].forward_many(weights, obs)
        alone = torch.stack([p(o) for p, o in zip(policies, obs)])
    assert together.shape == (3, 5, NUM_ACTIONS)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(together[0], together[1])  # each row block got its own policy
    with pytest.raises(ValueError, match="arch='mlp'"):
        SoccerPolicy.stack_weights([SoccerPolicy(arch="entity", device="cpu")])
    with pytest.raises(ValueError, match="one architecture"):
        SoccerPolicy.stack_weights([policies[0], SoccerPolicy(config, hidden=8, device="cpu")])
