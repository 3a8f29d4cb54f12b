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


def reference_group_advantages(returns, labels, scale="group", eps=EPS, baseline="mean"):
    """Plain loop over groups, python floats, statistics.stdev (unbiased)."""
    returns = [float(r) for r in returns]
    labels = [int(g) for g in labels]
    batch_std = statistics.stdev(returns) if len(returns) > 1 else 0.0
    out = []
    for i, (r, g) in enumerate(zip(returns, labels)):
        members = [x for x, h in zip(returns, labels) if h == g]
        if len(set(members)) == 1:
            out.append(0.0)
            continue
        if baseline == "mean":
            centered = r - statistics.fmean(members)
        else:  # leave-one-out: the mean of the other members
            others = [x for j, (x, h) in enumerate(zip(returns, labels)) if h == g and j != i]
            centered = r - statistics.fmean(others)
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


# --------------------------------------------------------------------------- leave-one-out baseline


def test_loo_hand_computed():
    # group [1, 2, 3]: others' means 2.5, 2, 1.5 -> (-1.5, 0, 1.5); group std 1
    # group [0, 2]: others 2, 0 -> (-2, 2); group std sqrt 2;  group [4]: singleton -> 0
    returns = torch.tensor([1.0, 2.0, 3.0, 0.0, 2.0, 4.0], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    none = group_advantages(returns, group_ids=labels, scale="none", baseline="loo")
    assert none.tolist() == [-1.5, 0.0, 1.5, -2.0, 2.0, 0.0]
    group = group_advantages(returns, group_ids=labels, baseline="loo")
    s = math.sqrt(2.0)
    assert group.tolist() == pytest.approx([-1.5 / (1 + EPS), 0.0, 1.5 / (1 + EPS), -2 / (s + EPS), 2 / (s + EPS), 0.0],
                                           abs=1e-12)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_loo_matches_loop_reference(scale):
    torch.manual_seed(5)
    labels = torch.tensor([7, 3, 7, 3, 7, 9, 3, 11, 9, 7, -4, -4, 2, 2])
    returns = torch.randn(14, dtype=torch.float64)
    returns[12:] = 0.3  # a constant pair
    adv = group_advantages(returns, group_ids=labels, scale=scale, baseline="loo")
    expected = reference_group_advantages(returns.tolist(), labels.tolist(), scale=scale, baseline="loo")
    assert adv.tolist() == pytest.approx(expected, abs=1e-12)
    assert adv[7].item() == 0.0 and adv[12:].tolist() == [0.0, 0.0]  # singleton and constant: exactly 0


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_loo_is_the_mean_baseline_times_n_over_n_minus_1(scale):
    torch.manual_seed(6)
    returns = torch.randn(12, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3])  # sizes 4, 2, 3, 3
    loo = group_advantages(returns, group_ids=labels, scale=scale, baseline="loo")
    mean = group_advantages(returns, group_ids=labels, scale=scale)
    size = torch.bincount(labels).double()[labels]
    torch.testing.assert_close(loo, mean * size / (size - 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("eps", [EPS, 0.0])
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("aggregation", ["sum_then_normalize", "normalize_then_sum"])
def test_loo_and_components_degenerate_groups_are_exactly_zero(aggregation, scale, eps):
    # per component: 0.1 three times (a rounding-error mean), a singleton, a varying pair, a constant pair
    first = [0.1, 0.1, 0.1, 5.0, 1.0, 2.0, 7.0, 7.0]
    second = [0.3, 0.3, 0.3, -1.0, 4.0, 4.5, 2.0, 2.0]
    returns = torch.tensor([first, second], dtype=torch.float64).T  # [S, F]
    labels = torch.tensor([0, 0, 0, 1, 2, 2, 3, 3])
    for baseline in ("mean", "loo"):
        adv = group_advantages(returns, group_ids=labels, scale=scale, eps=eps, baseline=baseline,
                               aggregation=aggregation, components=True, reward_weights=[1.0, 0.5])
        assert not torch.isnan(adv).any()
        assert adv[[0, 1, 2, 3, 6, 7]].tolist() == [0.0] * 6, baseline
        assert adv[4] < 0 < adv[5]
    # a batch of one singleton, and a batch of singletons
    for values in ([[3.0, 1.0]], [[3.0, 1.0], [4.0, 0.0]]):
        adv = group_advantages(torch.tensor(values), group_size=1, scale=scale, eps=eps, baseline="loo",
                               aggregation=aggregation, components=True)
        assert adv.tolist() == [0.0] * len(values)


# --------------------------------------------------------------------------- multi-component rewards


def reference_normalize_then_sum(components, labels, weights, scale="group", eps=EPS, baseline="mean"):
    """GDPO by plain loops: each component against its group, the weighted sum, then the sum over
    the unbiased std of the batch (unless scale is none)."""
    per_component = [reference_group_advantages(column, labels, scale=scale, eps=eps, baseline=baseline)
                     for column in zip(*components)]
    total = [sum(w * a[i] for w, a in zip(weights, per_component)) for i in range(len(labels))]
    if scale == "none":
        return total
    batch_std = statistics.stdev(total)
    return [0.0 if x == 0 else x / (batch_std + eps) for x in total]


@pytest.mark.parametrize("baseline", ["mean", "loo"])
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_normalize_then_sum_matches_loop_reference(scale, baseline):
    torch.manual_seed(7)
    labels = [4, 1, 4, 1, 4, 6, 1, 6, 8, 4, 8, 8]
    components = torch.randn(12, 3, dtype=torch.float64)
    components[:, 2] = (components[:, 2] > 0).double()  # a 0/1 component, as a format reward
    components[[8, 10, 11], 0] = 2.5  # one component constant in group 8
    weights = [1.0, 0.5, 2.0]
    adv = group_advantages(components, group_ids=torch.tensor(labels), scale=scale, baseline=baseline,
                           aggregation="normalize_then_sum", components=True, reward_weights=weights)
    expected = reference_normalize_then_sum(components.tolist(), labels, weights, scale=scale, baseline=baseline)
    assert adv.tolist() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("baseline", ["mean", "loo"])
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_sum_then_normalize_is_the_weighted_sum(scale, baseline):
    torch.manual_seed(8)
    components = torch.randn(12, 3, dtype=torch.float64)
    weights = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    adv = group_advantages(components, group_size=4, scale=scale, baseline=baseline, components=True,
                           reward_weights=weights)
    total = (components * weights).sum(-1)
    assert torch.equal(adv, group_advantages(total, group_size=4, scale=scale, baseline=baseline))
    expected = reference_group_advantages(total.tolist(), [i // 4 for i in range(12)], scale=scale, baseline=baseline)
    assert adv.tolist() == pytest.approx(expected, abs=1e-12)


def test_normalize_then_sum_matches_trl_transcription():
    """TRL 1.16 GRPOTrainer._generate_and_score_completions, multi_objective_aggregation="normalize_then_sum"
    (equal groups of num_generations, no unscorable rows), transcribed."""
    torch.manual_seed(9)
    num_generations, weights = 4, torch.tensor([1.0, 0.3], dtype=torch.float64)
    rewards_per_func = torch.randn(16, 2, dtype=torch.float64)
    grouped = rewards_per_func.view(-1, num_generations, 2)
    reward_k = (grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)
    rewards = (reward_k.view(-1, 2) * weights).sum(1)
    trl = (rewards - rewards.mean()) / (rewards.std() + 1e-4)
    ours = group_advantages(rewards_per_func, group_size=num_generations, aggregation="normalize_then_sum",
                            components=True, reward_weights=weights)
    torch.testing.assert_close(ours, trl, rtol=1e-10, atol=1e-12)


def test_a_decoupled_component_keeps_its_weight():
    # GDPO's point: summed first, a reward with a large range drowns a small one; normalised first,
    # each counts by its weight. Members (r0 in {0, 10}, r1 in {0, 1}): (10, 1) (10, 0) (0, 1) (0, 0).
    components = torch.tensor([[10.0, 1.0], [10.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    summed = group_advantages(components, group_size=4, components=True, scale="none")
    assert summed.tolist() == [5.5, 4.5, -4.5, -5.5]  # sums 11, 10, 1, 0 around 5.5: r0 decides
    decoupled = group_advantages(components, group_size=4, aggregation="normalize_then_sum", components=True)
    # each component splits the group 2-2: z = +-5/std(r0) and +-0.5/std(r1), both +-0.866;
    # the sums 1.732, 0, 0, -1.732 then go over their batch std 1.414 (eps 1e-4 in both steps)
    z = 0.5 / (statistics.stdev([1.0, 0.0, 1.0, 0.0]) + EPS)
    z0 = 5.0 / (statistics.stdev([10.0, 10.0, 0.0, 0.0]) + EPS)
    total = [z0 + z, z0 - z, -z0 + z, -z0 - z]
    batch_std = statistics.stdev(total)
    assert decoupled.tolist() == pytest.approx([x / (batch_std + EPS) for x in total], abs=1e-12)
    # (10, 0) and (0, 1) now count the same (up to eps, which weighs on the two stds differently)
    assert abs(decoupled[1].item()) < 1e-3 and abs(decoupled[2].item()) < 1e-3 < decoupled[0].item()


def test_single_component_normalize_then_sum_is_batch_renormalised():
    # one reward: normalize_then_sum = the group advantage over its batch std (as TRL)
    torch.manual_seed(10)
    returns = torch.randn(8, dtype=torch.float64)
    plain = group_advantages(returns, group_size=4)
    adv = group_advantages(returns, group_size=4, aggregation="normalize_then_sum")
    torch.testing.assert_close(adv, plain / (plain.std() + EPS))
    as_component = group_advantages(returns[:, None], group_size=4, aggregation="normalize_then_sum", components=True)
    torch.testing.assert_close(as_component, adv)
    # and with scale none the two aggregations agree
    none = group_advantages(returns, group_size=4, scale="none", aggregation="normalize_then_sum")
    torch.testing.assert_close(none, group_advantages(returns, group_size=4, scale="none"))


def test_components_per_column():
    # [S, T, F]: every column t is its own problem
    torch.manual_seed(11)
    returns = torch.randn(6, 3, 2, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    for aggregation in ("sum_then_normalize", "normalize_then_sum"):
        adv = group_advantages(returns, group_ids=labels, aggregation=aggregation, components=True,
                               baseline="loo", reward_weights=[2.0, 1.0])
        assert adv.shape == (6, 3)
        for t in range(3):
            column = group_advantages(returns[:, t], group_ids=labels, aggregation=aggregation, components=True,
                                      baseline="loo", reward_weights=[2.0, 1.0])
            torch.testing.assert_close(adv[:, t], column)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"baseline": "median"}, r"baseline must be one of \('mean', 'loo'\), got 'median'"),
        ({"aggregation": "mean"},
         r"aggregation must be one of \('sum_then_normalize', 'normalize_then_sum'\), got 'mean'"),
        ({"reward_weights": [1.0, 2.0]}, r"reward_weights weigh reward components: pass components=True"),
        ({"components": True, "reward_weights": [1.0, 2.0]},
         r"reward_weights must be 1 finite numbers \(one per component, \[F\] = \[1\]\), got \[1.0, 2.0\]"),
    ],
)
def test_baseline_and_component_errors(kwargs, match):
    returns = torch.zeros(6, 1) if kwargs.get("components") else torch.zeros(6)
    with pytest.raises(ValueError, match=match):
        group_advantages(returns, group_size=3, **kwargs)


def test_components_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"returns with components must have shape \[S, F\] or \[S, T, F\], got \[6\]"):
        group_advantages(torch.zeros(6), group_size=3, components=True)
    with pytest.raises(ValueError, match=r"rewards must have shape \[T, S, F\], got \[4, 6\]"):
        process_group_advantages(torch.zeros(4, 6), group_size=3, components=True)


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


@pytest.mark.parametrize("aggregation", ["sum_then_normalize", "normalize_then_sum"])
def test_process_group_advantages_with_components_and_loo(aggregation):
    torch.manual_seed(12)
    num_steps, num_members, gamma, weights = 5, 8, 0.9, [1.0, 0.25]
    rewards = torch.randn(num_steps, num_members, 2, dtype=torch.float64)
    dones = torch.rand(num_steps, num_members) < 0.2
    labels = torch.tensor([0, 1, 0, 1, 2, 2, 3, 0])  # member 6 alone
    adv = process_group_advantages(rewards, group_ids=labels, gamma=gamma, dones=dones, baseline="loo",
                                   aggregation=aggregation, components=True, reward_weights=weights)
    # loop reference: each component's return-to-go, then the step's group maths
    future = [[[0.0, 0.0] for _ in range(num_members)] for _ in range(num_steps)]
    for i in range(num_members):
        for f in range(2):
            running = 0.0
            for t in reversed(range(num_steps)):
                running = rewards[t, i, f].item() + gamma * (0.0 if dones[t, i] else 1.0) * running
                future[t][i][f] = running
    for t in range(num_steps):
        if aggregation == "sum_then_normalize":
            total = [weights[0] * a + weights[1] * b for a, b in future[t]]
            expected = reference_group_advantages(total, labels.tolist(), baseline="loo")
        else:
            expected = reference_normalize_then_sum(future[t], labels.tolist(), weights, baseline="loo")
        assert adv[t].tolist() == pytest.approx(expected, abs=1e-12), t
    assert adv[:, 6].tolist() == [0.0] * num_steps


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
