"""Advantage estimators against hand-computed numbers and plain loop references."""

import math
import statistics

import pytest
import torch

from marl_grpo.advantages import (
    gae,
    group_advantages,
    group_stats,
    process_group_advantages,
    returns_to_go,
)

EPS = 1e-4


def reference_group_advantages(returns, labels, scale="group", eps=EPS):
    """Plain loop over groups, python floats, statistics.stdev (unbiased)."""
    returns = [float(r) for r in returns]
    labels = [int(g) for g in labels]
    batch_std = statistics.stdev(returns) if len(returns) > 1 else 0.0
    out = []
    for r, g in zip(returns, labels):
        members = [x for x, h in zip(returns, labels) if h == g]
        if len(set(members)) == 1:
            out.append(0.0)
            continue
        centered = r - statistics.fmean(members)
        if scale == "group":
            centered /= statistics.stdev(members) + eps
        elif scale == "batch":
            centered /= batch_std + eps
        out.append(centered)
    return out


# --------------------------------------------------------------------------- group advantages


def test_hand_computed_group():
    # group [1, 2, 3]: mean 2, unbiased std 1 -> (-1, 0, 1) / (1 + 1e-4)
    # group [0, 2]:    mean 1, unbiased std sqrt(2) (the biased std would be 1)
    returns = torch.tensor([1.0, 2.0, 3.0, 0.0, 2.0])
    adv = group_advantages(returns, group_ids=torch.tensor([0, 0, 0, 1, 1]))
    s = math.sqrt(2.0)
    expected = [-1 / (1 + EPS), 0.0, 1 / (1 + EPS), -1 / (s + EPS), 1 / (s + EPS)]
    assert adv.tolist() == pytest.approx(expected, abs=1e-6)


def test_non_contiguous_group_ids_match_loop_reference():
    torch.manual_seed(0)
    labels = torch.tensor([7, 3, 7, 3, 7, 9, 3, 11, 9, 7, -4, -4])
    returns = torch.randn(12, dtype=torch.float64)
    for scale in ("group", "batch", "none"):
        adv = group_advantages(returns, group_ids=labels, scale=scale)
        expected = reference_group_advantages(returns.tolist(), labels.tolist(), scale=scale)
        assert adv.tolist() == pytest.approx(expected, abs=1e-12), scale


def test_group_size_matches_equivalent_group_ids():
    torch.manual_seed(1)
    returns = torch.randn(12)
    by_size = group_advantages(returns, group_size=4)
    by_ids = group_advantages(returns, group_ids=torch.arange(12) // 4)
    torch.testing.assert_close(by_size, by_ids)
    # and a permutation of the members permutes the advantages
    perm = torch.randperm(12)
    permuted = group_advantages(returns[perm], group_ids=(torch.arange(12) // 4)[perm])
    torch.testing.assert_close(permuted, by_size[perm])


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_zero_variance_and_singleton_groups_are_exactly_zero(scale):
    # 0.1 three times has a rounding-error mean (0.30000000000000004 / 3), so only an exact
    # constancy test gives exactly 0 here
    returns = torch.tensor([0.1, 0.1, 0.1, 5.0, 1.0, 2.0, 7.0, 7.0], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 2, 2, 3, 3])  # group 1 is a singleton
    adv = group_advantages(returns, group_ids=labels, scale=scale)
    assert not torch.isnan(adv).any()
    assert adv[[0, 1, 2, 3, 6, 7]].tolist() == [0.0] * 6
    assert adv[4] < 0 < adv[5]


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_all_constant_and_single_member_batches(scale):
    assert group_advantages(torch.ones(6), group_size=3, scale=scale).tolist() == [0.0] * 6
    assert group_advantages(torch.tensor([3.0]), group_size=1, scale=scale).tolist() == [0.0]
    assert group_advantages(torch.tensor([3.0, 4.0]), group_size=1, scale=scale).tolist() == [0.0, 0.0]


def test_batch_and_none_scaling_hand_computed():
    # groups of 2: [0, 2], [10, 10], [1, 5]; group means 1, 10, 3
    returns = torch.tensor([0.0, 2.0, 10.0, 10.0, 1.0, 5.0], dtype=torch.float64)
    none = group_advantages(returns, group_size=2, scale="none")
    assert none.tolist() == [-1.0, 1.0, 0.0, 0.0, -2.0, 2.0]
    # batch: the same centred values over the unbiased std of all six returns
    batch_std = statistics.stdev([0.0, 2.0, 10.0, 10.0, 1.0, 5.0])
    batch = group_advantages(returns, group_size=2, scale="batch")
    assert batch.tolist() == pytest.approx([x / (batch_std + EPS) for x in none.tolist()], abs=1e-12)


def test_columns_are_normalised_independently():
    torch.manual_seed(2)
    returns = torch.randn(9, 4, dtype=torch.float64)
    returns[:, 2] = 1.0  # a constant column
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 1, 1, 0])
    for scale in ("group", "batch", "none"):
        adv = group_advantages(returns, group_ids=labels, scale=scale)
        assert adv.shape == (9, 4)
        for k in range(4):
            torch.testing.assert_close(adv[:, k], group_advantages(returns[:, k], group_ids=labels, scale=scale))
        assert adv[:, 2].tolist() == [0.0] * 9


def test_integer_returns_and_detached_output():
    adv = group_advantages(torch.tensor([0, 2, 4, 4]), group_size=2, scale="none")
    assert adv.dtype.is_floating_point and adv.tolist() == [-1.0, 1.0, 0.0, 0.0]
    returns = torch.tensor([1.0, 3.0], requires_grad=True)
    assert not group_advantages(returns, group_size=2).requires_grad


def test_group_stats():
    # groups [1, 3] (std sqrt 2), [5, 5] (std 0), [7] (singleton, std 0)
    stats = group_stats(torch.tensor([1.0, 3.0, 5.0, 5.0, 7.0]), group_ids=torch.tensor([4, 4, 1, 1, 9]))
    assert stats["reward_std"].item() == pytest.approx(math.sqrt(2.0) / 3)
    assert stats["frac_zero_std"].item() == pytest.approx(2 / 3)
    assert group_stats(torch.arange(6.0), group_size=3)["frac_zero_std"].item() == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, r"pass exactly one of group_ids .* or group_size"),
        ({"group_ids": torch.zeros(6, dtype=torch.long), "group_size": 3}, r"pass exactly one of group_ids"),
        ({"group_size": 4}, r"group_size=4 must divide the number of members S=6"),
        ({"group_size": 0}, r"group_size must be a positive int, got 0"),
        ({"group_ids": torch.zeros(5, dtype=torch.long)}, r"group_ids must have shape \[S\] = \[6\], got \[5\]"),
        ({"group_ids": torch.zeros(6)}, r"group_ids must be an integer tensor, got dtype torch.float32"),
        ({"group_size": 3, "scale": "std"}, r"scale must be one of \('group', 'batch', 'none'\), got 'std'"),
        ({"group_size": 3, "eps": -1.0}, r"eps must be >= 0, got -1.0"),
    ],
)
def test_group_advantages_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(torch.zeros(6), **kwargs)


def test_group_advantages_rejects_bad_returns_shape():
    with pytest.raises(ValueError, match=r"returns must have shape \[S\] or \[S, T\], got \[2, 2, 2\]"):
        group_advantages(torch.zeros(2, 2, 2), group_size=2)


# --------------------------------------------------------------------------- process supervision


def test_returns_to_go_hand_computed():
    # gamma 0.5: G2 = 3, G1 = 2 + 0.5*3 = 3.5, G0 = 1 + 0.5*3.5 = 2.75
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    assert returns_to_go(rewards, gamma=0.5)[:, 0].tolist() == [2.75, 3.5, 3.0]
    # episode ends after step 1: G2 = 3, G1 = 2, G0 = 1 + 0.5*2 = 2
    dones = torch.tensor([[False], [True], [False]])
    assert returns_to_go(rewards, gamma=0.5, dones=dones)[:, 0].tolist() == [2.0, 2.0, 3.0]


def test_process_group_advantages_match_loop_reference():
    torch.manual_seed(3)
    num_steps, num_members, gamma = 6, 10, 0.9
    rewards = torch.randn(num_steps, num_members, dtype=torch.float64)
    dones = torch.rand(num_steps, num_members) < 0.2
    rewards[:, 8:] = 0.5  # members 8 and 9 (same rewards, same dones) form a constant group
    dones[:, 9] = dones[:, 8]
    labels = torch.tensor([1, 0, 1, 0, 2, 1, 2, 0, 5, 5])

    # loop reference: return-to-go per member, then the group stats at each step
    future = [[0.0] * num_members for _ in range(num_steps)]
    for i in range(num_members):
        running = 0.0
        for t in reversed(range(num_steps)):
            running = rewards[t, i].item() + gamma * (0.0 if dones[t, i] else 1.0) * running
            future[t][i] = running
    for scale in ("group", "batch", "none"):
        adv = process_group_advantages(rewards, group_ids=labels, gamma=gamma, scale=scale, dones=dones)
        assert adv.shape == (num_steps, num_members)
        for t in range(num_steps):
            expected = reference_group_advantages(future[t], labels.tolist(), scale=scale)
            assert adv[t].tolist() == pytest.approx(expected, abs=1e-12), (scale, t)
        assert adv[:, 8:].abs().sum().item() == 0.0


def test_process_group_advantages_group_size_and_errors():
    rewards = torch.tensor([[1.0, 3.0, 0.0, 0.0], [1.0, 1.0, 2.0, 0.0]])
    # gamma 1: return-to-go [[2, 4, 2, 0], [1, 1, 2, 0]]; groups {0,1} {2,3}, no scaling
    adv = process_group_advantages(rewards, group_size=2, scale="none")
    assert adv.tolist() == [[-1.0, 1.0, 1.0, -1.0], [0.0, 0.0, 1.0, -1.0]]
    with pytest.raises(ValueError, match=r"rewards must have shape \[T, S\], got \[4\]"):
        process_group_advantages(torch.zeros(4), group_size=2)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\], got 1.5"):
        process_group_advantages(rewards, group_size=2, gamma=1.5)


# --------------------------------------------------------------------------- GAE


def reference_gae(rewards, values, dones, last_value, gamma, lam):
    """CleanRL-style loop over time and over every environment separately, python floats."""
    num_steps = rewards.shape[0]
    flat_r = rewards.reshape(num_steps, -1)
    flat_v = values.reshape(num_steps, -1)
    flat_d = dones.reshape(num_steps, -1).double()
    flat_last = last_value.reshape(-1)
    advantages = torch.zeros_like(flat_r)
    for env in range(flat_r.shape[1]):
        last_gae = 0.0
        for t in reversed(range(num_steps)):
            next_value = flat_last[env].item() if t == num_steps - 1 else flat_v[t + 1, env].item()
            not_done = 1.0 - flat_d[t, env].item()
            delta = flat_r[t, env].item() + gamma * next_value * not_done - flat_v[t, env].item()
            last_gae = delta + gamma * lam * not_done * last_gae
            advantages[t, env] = last_gae
    advantages = advantages.reshape(rewards.shape)
    return advantages, advantages + values


@pytest.mark.parametrize("trailing", [(4,), (3, 2), ()])
@pytest.mark.parametrize("gamma, lam", [(0.99, 0.95), (0.9, 1.0), (1.0, 0.0)])
def test_gae_matches_loop_reference(trailing, gamma, lam):
    torch.manual_seed(4)
    shape = (9, *trailing)
    rewards = torch.randn(shape, dtype=torch.float64)
    values = torch.randn(shape, dtype=torch.float64)
    dones = torch.rand(shape) < 0.25  # episode boundaries inside the rollout
    last_value = torch.randn(trailing, dtype=torch.float64)

    advantages, returns = gae(rewards, values, dones, last_value, gamma=gamma, lam=lam)
    ref_adv, ref_ret = reference_gae(rewards, values, dones, last_value, gamma, lam)
    torch.testing.assert_close(advantages, ref_adv, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(returns, ref_ret, rtol=1e-12, atol=1e-12)
    # float dones give the same answer as bool dones
    advantages_f, _ = gae(rewards, values, dones.double(), last_value, gamma=gamma, lam=lam)
    torch.testing.assert_close(advantages_f, advantages)


def test_gae_hand_computed():
    # T = 2, gamma = 0.5, lam = 0.5; V = [1, 2], last_value = 4, rewards [1, 1]
    #   delta_1 = 1 + 0.5*4 - 2 = 1;   A_1 = 1
    #   delta_0 = 1 + 0.5*2 - 1 = 1;   A_0 = 1 + 0.25*1 = 1.25
    # with the episode ending after step 0: delta_0 = 1 - 1 = 0, A_0 = 0
    rewards = torch.tensor([[1.0], [1.0]])
    values = torch.tensor([[1.0], [2.0]])
    last_value = torch.tensor([4.0])
    adv, ret = gae(rewards, values, torch.zeros(2, 1), last_value, gamma=0.5, lam=0.5)
    assert adv[:, 0].tolist() == [1.25, 1.0]
    assert ret[:, 0].tolist() == [2.25, 3.0]
    adv, _ = gae(rewards, values, torch.tensor([[1.0], [0.0]]), last_value, gamma=0.5, lam=0.5)
    assert adv[:, 0].tolist() == [0.0, 1.0]


def test_gae_outputs_are_detached():
    values = torch.randn(4, 2, requires_grad=True)
    advantages, returns = gae(torch.randn(4, 2), values, torch.zeros(4, 2), torch.zeros(2))
    assert not advantages.requires_grad and not returns.requires_grad


def test_gae_errors():
    r = torch.zeros(5, 3)
    with pytest.raises(ValueError, match=r"values must have the shape of rewards \[5, 3\], got \[5, 2\]"):
        gae(r, torch.zeros(5, 2), r, torch.zeros(3))
    with pytest.raises(ValueError, match=r"dones must have the shape of rewards \[5, 3\], got \[4, 3\]"):
        gae(r, r, torch.zeros(4, 3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"last_value must have shape rewards.shape\[1:\] = \[3\], got \[5, 3\]"):
        gae(r, r, r, r)
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1\], got 1.1"):
        gae(r, r, r, torch.zeros(3), lam=1.1)
