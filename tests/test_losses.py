"""Loss core against numbers worked out by hand, and a plain loop reference."""

import dataclasses
import math

import pytest
import torch

import marl_grpo.run.update
from marl_grpo.losses import (
    CLIPPED_LOSS_TYPES,
    KL_ESTIMATORS,
    LOSS_RATIO_LEVELS,
    LOSS_TYPES,
    RATIO_LEVELS,
    PolicyLossOptions,
    aggregate,
    check_loss_options,
    cispo_surrogate,
    clipped_surrogate,
    explained_variance,
    importance_ratio,
    kl_penalty,
    off_policy_mask,
    policy_loss,
    sapo_surrogate,
    value_loss,
    vespo_surrogate,
)
from marl_grpo.run.config import RunConfig
from marl_grpo.run.update import UpdateBatch, policy_update

LN2 = math.log(2.0)

# --------------------------------------------------------------------------- shared fixture
#
# S = 2 sequences, T = 3 tokens; the last token of sequence 1 is padding.
#
#   ratio r = exp(logp - old_logp)    mask     advantage
#   seq 0:  [2.0, 0.5, 1.331]         [1 1 1]  A = +1
#   seq 1:  [1.8, 0.2, (3.0)]         [1 1 0]  A = -2
#
# The ratios are chosen so that GSPO's geometric means are round:
#   s_0 = (2 * 0.5 * 1.331)^(1/3) = 1.1,   s_1 = (1.8 * 0.2)^(1/2) = 0.6
# (the padded 3.0 must not enter s_1).
#
# logp - ref_logp = d:  seq 0: [ln2, 0, -ln2]   seq 1: [0, ln2, (5.0)]

OLD_LOGP = [[-1.0, -2.0, -0.5], [-1.5, -0.7, -1.2]]
RATIOS = [[2.0, 0.5, 1.331], [1.8, 0.2, 3.0]]
MASK = [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
ADV = [1.0, -2.0]
LOGP_MINUS_REF = [[LN2, 0.0, -LN2], [0.0, LN2, 5.0]]


def make_batch(dtype=torch.float64):
    old_logp = torch.tensor(OLD_LOGP, dtype=dtype)
    logp = old_logp + torch.tensor(RATIOS, dtype=dtype).log()
    ref_logp = logp - torch.tensor(LOGP_MINUS_REF, dtype=dtype)
    mask = torch.tensor(MASK, dtype=dtype)
    advantages = torch.tensor(ADV, dtype=dtype)
    return logp, old_logp, advantages, mask, ref_logp


# Clipped surrogate, clip_eps = 0.2 (clip range [0.8, 1.2]); per token -min(r A, clip(r) A):
#
# token level
#   seq 0 (A=+1): r=2.0   -> min(2.0, 1.2)    = 1.2   -> -1.2   (high-clipped)
#                 r=0.5   -> min(0.5, 0.8)    = 0.5   -> -0.5
#                 r=1.331 -> min(1.331, 1.2)  = 1.2   -> -1.2   (high-clipped)   sum -2.9
#   seq 1 (A=-2): r=1.8   -> min(-3.6, -2.4)  = -3.6  -> 3.6
#                 r=0.2   -> min(-0.4, -1.6)  = -1.6  -> 1.6    (low-clipped)    sum  5.2
#   grpo    = (-2.9/3 + 5.2/2) / 2 = 0.81666...
#   bnpo    = dapo = (-2.9 + 5.2) / 5 = 0.46
#   dr_grpo = 2.3 / (S * T) = 2.3 / 6
#
# sequence level (GSPO): s_0 = 1.1, s_1 = 0.6
#   seq 0 (A=+1): min(1.1, 1.1)   -> -1.1 per token (not clipped)           sum -3.3
#   seq 1 (A=-2): min(-1.2, -1.6) -> 1.6 per token (0.6 < 0.8: low-clipped) sum  3.2
#   grpo    = (-1.1 + 1.6) / 2 = 0.25
#   bnpo    = dapo = (-3.3 + 3.2) / 5 = -0.02
#   dr_grpo = -0.1 / 6
#   luspo   = (-3.3 + 3.2) / S = -0.05          (sum over each sequence's tokens, mean over sequences)
#
# The other loss types, on the same batch. logp = old_logp + ln r:
#   seq 0: L0 = [-1 + ln2, -2 - ln2, -0.5 + ln1.331]   sum -3.5 + ln1.331
#   seq 1: L1 = [-1.5 + ln1.8, -0.7 + ln0.2]           sum -2.2 + ln0.36
#
# cispo (eps_max = clip_eps_high = 1.5): l = -min(r, 1.5) A logp, token mean over the 5 tokens
#   token:    weights seq 0 [1.5, 0.5, 1.331], seq 1 [1.5, 0.2]
#             (-(1.5 L00 + 0.5 L01 + 1.331 L02) + 2 (1.5 L10 + 0.2 L11)) / 5
#             cispo_clip_ratio: r > 1.5 and A > 0 only at seq 0 token 0 -> 1/5
#   sequence: weights 1.1 and 0.6: (-1.1 sum L0 + 2 * 0.6 sum L1) / 5; nothing capped
# sapo (tau+ = 1 for A > 0, tau- = 1.05): l = -sigmoid(tau (r - 1)) 4/tau A, grpo aggregation
#   token:    seq 0: -(4/3)(sig(1) + sig(-0.5) + sig(0.331))
#             seq 1: 2 (4/1.05) (sig(0.84) + sig(-0.84)) / 2 = 4/1.05   (sig(x) + sig(-x) = 1)
#   sequence: seq 0: -4 sig(0.1);  seq 1: 2 (4/1.05) sig(1.05 * -0.4) = (8/1.05) sig(-0.42)
# vespo (token ratios only): w = prod_t r_t, phi = w^k exp(lambda (1 - w)), token mean of -phi A logp
#   seq 0: w = 1.331, A > 0 (k 2, lambda 3): phi0 = 1.331^2 exp(3 (1 - 1.331))
#   seq 1: w = 0.36,  A < 0 (k 3, lambda 2): phi1 = 0.36^3 exp(2 (1 - 0.36))
#   loss = (-phi0 sum L0 + 2 phi1 sum L1) / 5;  vespo/phi_seq_mean = (phi0 + phi1) / 2
L0 = [-1.0 + LN2, -2.0 - LN2, -0.5 + math.log(1.331)]
L1 = [-1.5 + math.log(1.8), -0.7 + math.log(0.2)]
CISPO_EPS_MAX = 1.5
PHI = (1.331**2 * math.exp(3 * (1 - 1.331)), 0.36**3 * math.exp(2 * (1 - 0.36)))


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


SURROGATE = {
    ("grpo", "token"): (-2.9 / 3 + 5.2 / 2) / 2,
    ("bnpo", "token"): 2.3 / 5,
    ("dapo", "token"): 2.3 / 5,
    ("dr_grpo", "token"): 2.3 / 6,
    ("grpo", "sequence"): 0.25,
    ("bnpo", "sequence"): -0.02,
    ("dapo", "sequence"): -0.02,
    ("dr_grpo", "sequence"): -0.1 / 6,
    ("luspo", "sequence"): -0.05,
    ("cispo", "token"): (-(1.5 * L0[0] + 0.5 * L0[1] + 1.331 * L0[2]) + 2 * (1.5 * L1[0] + 0.2 * L1[1])) / 5,
    ("cispo", "sequence"): (-1.1 * sum(L0) + 2 * 0.6 * sum(L1)) / 5,
    ("sapo", "token"): (-(4 / 3) * (sig(1.0) + sig(-0.5) + sig(0.331)) + 4 / 1.05) / 2,
    ("sapo", "sequence"): (-4 * sig(0.1) + (8 / 1.05) * sig(-0.42)) / 2,
    ("vespo", "token"): (-PHI[0] * sum(L0) + 2 * PHI[1] * sum(L1)) / 5,
}
"""every loss_type x ratio_level that the loss core allows (luspo: sequence only; vespo: token only)"""

# Per-token KL, with d = logp - ref on the real tokens (q = ln2^2 / 2):
#                    seq 0                       seq 1          sums (s0, s1)
#   k1 = d           [ln2, 0, -ln2]              [0, ln2]       (0, ln2)
#   k2 = d^2/2       [q, 0, q]                   [0, q]         (2q, q)
#   k3 = e^-d + d - 1 [ln2 - 1/2, 0, 1 - ln2]    [0, ln2 - 1/2] (1/2, ln2 - 1/2)
# With use_bias_correction_kl each token's KL is multiplied by the importance ratio:
#   token ratios [2, 0.5, 1.331] and [1.8, 0.2]:
#     k1 (2 ln2 - 1.331 ln2, 0.2 ln2)   k2 (2q + 1.331 q, 0.2 q)
#     k3 (2 (ln2 - 1/2) + 1.331 (1 - ln2), 0.2 (ln2 - 1/2))
#   sequence ratios 1.1 and 0.6: the plain sums times 1.1 and 0.6
# Aggregation of the sums over 3 and 2 real tokens: grpo (and sapo) (s0/3 + s1/2) / 2; bnpo, dapo
# (and cispo, vespo) (s0 + s1) / 5; dr_grpo (s0 + s1) / (S * T = 6); luspo (s0 + s1) / S.
Q = LN2**2 / 2
KL_SUMS = {"k1": (0.0, LN2), "k2": (2 * Q, Q), "k3": (0.5, LN2 - 0.5)}
KL_SUMS_TOKEN_CORRECTED = {
    "k1": (2 * LN2 - 1.331 * LN2, 0.2 * LN2),
    "k2": (2 * Q + 1.331 * Q, 0.2 * Q),
    "k3": (2 * (LN2 - 0.5) + 1.331 * (1 - LN2), 0.2 * (LN2 - 0.5)),
}
AGGREGATION = {"grpo": "grpo", "sapo": "grpo", "bnpo": "token_mean", "dapo": "token_mean",
               "cispo": "token_mean", "vespo": "token_mean", "dr_grpo": "dr_grpo", "luspo": "luspo"}


def kl_sums(kl_estimator, bias_correction, ratio_level):
    s0, s1 = KL_SUMS[kl_estimator]
    if not bias_correction:
        return s0, s1
    if ratio_level == "token":
        return KL_SUMS_TOKEN_CORRECTED[kl_estimator]
    return 1.1 * s0, 0.6 * s1


def aggregate_sums(s0, s1, loss_type):
    return {"grpo": (s0 / 3 + s1 / 2) / 2, "token_mean": (s0 + s1) / 5, "dr_grpo": (s0 + s1) / 6,
            "luspo": (s0 + s1) / 2}[AGGREGATION[loss_type]]


# Stats in TRL's units:
#   token level: over the 5 real tokens; high-clipped 2, low-clipped 1
#   sequence level with [S] advantages: over the 2 sequences; seq 1 low-clipped
CLIP_STATS = {
    "token": {"clip_frac": 3 / 5, "clip_frac_low": 1 / 5, "clip_frac_high": 2 / 5},
    "sequence": {"clip_frac": 1 / 2, "clip_frac_low": 1 / 2, "clip_frac_high": 0.0},
}
RATIO_MEAN = {"token": (2.0 + 0.5 + 1.331 + 1.8 + 0.2) / 5, "sequence": (1.1 + 0.6) / 2}
OTHER_STATS = {
    ("cispo", "token"): {"cispo_clip_ratio": 1 / 5, "clip_frac": 1 / 5},
    ("cispo", "sequence"): {"cispo_clip_ratio": 0.0, "clip_frac": 0.0},
    ("vespo", "token"): {"vespo/phi_seq_mean": (PHI[0] + PHI[1]) / 2},
}
# approx_kl always uses the token ratio: mean over real tokens of (r - 1) - ln r
APPROX_KL = sum((r - 1) - math.log(r) for r in [2.0, 0.5, 1.331, 1.8, 0.2]) / 5


def close(actual, expected, tol=1e-9):
    return actual.item() == pytest.approx(expected, abs=tol)


# --------------------------------------------------------------------------- hand-computed grid


@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("kl_estimator", KL_ESTIMATORS)
@pytest.mark.parametrize("loss_type, ratio_level", list(SURROGATE))
def test_policy_loss_hand_computed(loss_type, ratio_level, kl_estimator, bias_correction):
    logp, old_logp, advantages, mask, ref_logp = make_batch()
    kl_coef = 0.1
    loss, stats = policy_loss(
        logp, old_logp, advantages, mask,
        ratio_level=ratio_level, loss_type=loss_type,
        clip_eps_high=CISPO_EPS_MAX if loss_type == "cispo" else None,
        ref_logp=ref_logp, kl_coef=kl_coef, kl_estimator=kl_estimator, use_bias_correction_kl=bias_correction,
    )
    surrogate = SURROGATE[(loss_type, ratio_level)]
    s0, s1 = kl_sums(kl_estimator, bias_correction, ratio_level)
    # the KL is added per token before aggregating, and every aggregation is linear
    assert close(loss, surrogate + kl_coef * aggregate_sums(s0, s1, loss_type))
    assert close(stats["policy_loss"], surrogate)
    assert close(stats["kl"], (s0 + s1) / 5)
    assert close(stats["approx_kl"], APPROX_KL)
    assert close(stats["ratio_mean"], RATIO_MEAN[ratio_level])
    if loss_type in CLIPPED_LOSS_TYPES:
        expected = CLIP_STATS[ratio_level]
    else:
        expected = OTHER_STATS.get((loss_type, ratio_level), {})
    for name, value in expected.items():
        assert close(stats[name], value), name
    if loss_type in ("sapo", "vespo"):  # soft weights: no hard clip to count
        assert "clip_frac" not in stats


def test_grid_covers_every_allowed_combination():
    allowed = {(t, r) for t in LOSS_TYPES for r in RATIO_LEVELS if r in LOSS_RATIO_LEVELS.get(t, RATIO_LEVELS)}
    assert set(SURROGATE) == allowed
    assert len(allowed) == 2 * 8 - 2


def test_stats_are_detached_zero_dim_tensors():
    logp, old_logp, advantages, mask, ref_logp = make_batch()
    logp.requires_grad_(True)
    _, stats = policy_loss(logp, old_logp, advantages, mask, ref_logp=ref_logp, dual_clip=3.0)
    assert {"policy_loss", "clip_frac", "clip_frac_low", "clip_frac_high", "approx_kl",
            "ratio_mean", "kl", "dual_clip_frac"} <= set(stats)
    for loss_type, key in (("cispo", "cispo_clip_ratio"), ("vespo", "vespo/phi_seq_mean"), ("sapo", "ratio_mean")):
        _, more = policy_loss(logp, old_logp, advantages, mask, ref_logp=ref_logp, loss_type=loss_type)
        assert key in more
        stats.update({f"{loss_type}:{k}": v for k, v in more.items()})
    for name, value in stats.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0, name
        assert not value.requires_grad, name


def test_no_kl_stat_without_reference():
    logp, old_logp, advantages, mask, _ = make_batch()
    _, stats = policy_loss(logp, old_logp, advantages, mask)
    assert "kl" not in stats


def test_dr_grpo_max_len():
    # token-level masked sum 2.3, normalised by S * max_len = 2 * 4
    logp, old_logp, advantages, mask, _ = make_batch()
    loss, _ = policy_loss(logp, old_logp, advantages, mask, loss_type="dr_grpo", max_len=4)
    assert close(loss, 2.3 / 8)


@pytest.mark.parametrize(
    "clip_eps_high, expected_loss, expected_high",
    [
        # eps_high = 0.28 (DAPO): seq 0 -> [-1.28, -0.5, -1.28] = -3.06; (-3.06 + 5.2) / 5
        (0.28, (-3.06 + 5.2) / 5, 2 / 5),
        # eps_high = 0.4: r=2 -> -1.4 (clipped), r=1.331 < 1.4 -> -1.331; (-3.231 + 5.2) / 5
        (0.4, (-3.231 + 5.2) / 5, 1 / 5),
    ],
)
def test_clip_higher(clip_eps_high, expected_loss, expected_high):
    logp, old_logp, advantages, mask, _ = make_batch()
    loss, stats = policy_loss(
        logp, old_logp, advantages, mask, loss_type="dapo", clip_eps_high=clip_eps_high
    )
    assert close(loss, expected_loss)
    assert close(stats["clip_frac_high"], expected_high)
    assert close(stats["clip_frac_low"], 1 / 5)  # the low side still uses clip_eps = 0.2


@pytest.mark.parametrize(
    "dual_clip, ratio_level, expected_loss, expected_frac",
    [
        # bound -c*A = 1.25 * 2 = 2.5 for seq 1: token losses [3.6, 1.6] -> [2.5, 1.6]
        # grpo = (-2.9/3 + 4.1/2) / 2; binds on 1 of 5 tokens
        (1.25, "token", (-2.9 / 3 + 4.1 / 2) / 2, 1 / 5),
        # bound 3 * 2 = 6 > 3.6: no effect
        (3.0, "token", (-2.9 / 3 + 5.2 / 2) / 2, 0.0),
        # sequence level: seq 1 loss 1.6 < 2.5: no effect
        (1.25, "sequence", 0.25, 0.0),
        # for A < 0 the dual clip binds only where r > c; here s_1 = 0.6, so even c = 1.05 is idle
        (1.05, "sequence", 0.25, 0.0),
    ],
)
def test_dual_clip(dual_clip, ratio_level, expected_loss, expected_frac):
    logp, old_logp, advantages, mask, _ = make_batch()
    loss, stats = policy_loss(
        logp, old_logp, advantages, mask, ratio_level=ratio_level, dual_clip=dual_clip
    )
    assert close(loss, expected_loss)
    assert close(stats["dual_clip_frac"], expected_frac)


def test_dual_clip_has_no_gradient_where_it_binds():
    logp, old_logp, advantages, mask, _ = make_batch()
    logp.requires_grad_(True)
    policy_loss(logp, old_logp, advantages, mask, dual_clip=1.25)[0].backward()
    # seq 1, token 0 (r = 1.8, A = -2) is bounded by the constant 2.5
    assert logp.grad[1, 0].item() == 0.0
    # seq 0 token 1 (r = 0.5, A = +1, unclipped): d/dlogp of -r*A/(3*2) = -0.5/6
    assert logp.grad[0, 1].item() == pytest.approx(-0.5 / 6)


@pytest.mark.parametrize(
    "delta, ratio_level, expected_loss, expected_high",
    [
        # delta = 1.5 caps the unclipped branch: seq 1 token 0 (r = 1.8, A = -2):
        # min(1.5 * -2, 1.2 * -2) = -3 -> 3.0 instead of 3.6; seq 0 keeps its clipped 1.2s
        # grpo = (-2.9/3 + (3.0 + 1.6)/2) / 2; the capped ratios 1.5 > 1.2 still count as high-clipped
        (1.5, "token", (-2.9 / 3 + 4.6 / 2) / 2, 2 / 5),
        # delta = 1.1 < 1 + eps_high also lowers A > 0 tokens: seq 0 [-1.1, -0.5, -1.1] = -2.7,
        # seq 1 r = 1.8: min(-2.2, -2.4) = -2.4 -> 2.4, r = 0.2 -> 1.6: (-2.7/3 + 4.0/2) / 2 = 0.55.
        # TRL counts clipping on the capped ratio (1.1 < 1.2): nothing is high-clipped
        (1.1, "token", 0.55, 0.0),
        # sequence level, delta = 1.05: s_0 = 1.1 -> min(1.05, 1.1) = 1.05; seq 1 (s = 0.6) unchanged
        (1.05, "sequence", (-1.05 + 1.6) / 2, 0.0),
    ],
)
def test_delta_two_sided_clipping(delta, ratio_level, expected_loss, expected_high):
    logp, old_logp, advantages, mask, _ = make_batch()
    logp.requires_grad_(True)
    loss, stats = policy_loss(logp, old_logp, advantages, mask, ratio_level=ratio_level, delta=delta)
    assert close(loss, expected_loss)
    assert close(stats["clip_frac_high"], expected_high)
    assert close(stats["ratio_mean"], RATIO_MEAN[ratio_level])  # the ratio before the cap
    loss.backward()
    if ratio_level == "token":  # where the cap binds the loss is a constant: no gradient
        assert logp.grad[1, 0].item() == 0.0
        assert logp.grad[1, 1].item() == 0.0  # low-clipped as before
        # seq 0 token 1 (r = 0.5, A = +1, unclipped): d/dlogp of -r A / (3 * 2) = -0.5 / 6
        assert logp.grad[0, 1].item() == pytest.approx(-0.5 / 6)


def test_delta_is_the_dual_clip_for_negative_advantages():
    # with delta > 1 + eps_high, the two-sided clip bounds A < 0 tokens at -delta * A, like dual_clip
    torch.manual_seed(4)
    old_logp = -torch.rand(5, 4, dtype=torch.float64)
    logp = old_logp + torch.randn(5, 4, dtype=torch.float64)
    advantages = torch.tensor([-1.0, -0.5, -2.0, -0.1, -3.0], dtype=torch.float64)
    with_delta, _ = policy_loss(logp, old_logp, advantages, delta=1.7)
    with_dual, _ = policy_loss(logp, old_logp, advantages, dual_clip=1.7)
    assert close(with_delta, with_dual.item(), tol=1e-12)


@pytest.mark.parametrize(
    "threshold, ratio_level, expected",
    [
        # mean_t (old_logp - logp) = -mean_t ln r: seq 0 -ln1.331/3 = -ln1.1 (A > 0: kept anyway),
        # seq 1 -(ln1.8 + ln0.2)/2 = -ln0.6 = 0.511 with A < 0: dropped when 0.511 > threshold
        (0.5, "token", (-2.9 / 3 + 0.0) / 2),
        (0.52, "token", SURROGATE[("grpo", "token")]),
        (0.5, "sequence", (-1.1 + 0.0) / 2),
        (0.0, "sequence", (-1.1 + 0.0) / 2),
    ],
)
def test_off_policy_mask(threshold, ratio_level, expected):
    logp, old_logp, advantages, mask, ref_logp = make_batch()
    logp.requires_grad_(True)
    loss, stats = policy_loss(logp, old_logp, advantages, mask, ratio_level=ratio_level,
                              off_policy_mask_threshold=threshold)
    assert close(loss, expected)
    assert close(stats["policy_loss"], expected)
    loss.backward()
    dropped = threshold < -math.log(0.6)
    assert torch.all(logp.grad[1] == 0) == dropped
    # the KL term is not masked (TRL adds it after the mask)
    with_kl, _ = policy_loss(logp, old_logp, advantages, mask, ratio_level=ratio_level,
                             off_policy_mask_threshold=threshold, ref_logp=ref_logp, kl_coef=0.1)
    assert close(with_kl, expected + 0.1 * aggregate_sums(*KL_SUMS["k3"], "grpo"))


def test_off_policy_mask_with_per_token_advantages_tests_each_token():
    # seq 1's mean KL 0.511 > 0.5: its A < 0 token is dropped, its A = 3 token kept:
    # r = 0.2, A = 3: -min(0.6, 2.4) = -0.6 -> seq 1 mean (0 - 0.6) / 2; seq 0 as before
    logp, old_logp, _, mask, _ = make_batch()
    advantages = torch.tensor([[1.0, 1.0, 1.0], [-2.0, 3.0, 0.0]], dtype=torch.float64)
    loss, _ = policy_loss(logp, old_logp, advantages, mask, off_policy_mask_threshold=0.5)
    assert close(loss, (-2.9 / 3 - 0.3) / 2)


def test_cispo_cap_defaults_to_clip_eps_as_in_trl():
    # TRL's epsilon_high falls back to epsilon (0.2), and CISPO caps the ratio itself at it:
    # every weight is min(r, 0.2) = 0.2 here (the smallest ratio is 0.2)
    logp, old_logp, advantages, mask, _ = make_batch()
    loss, stats = policy_loss(logp, old_logp, advantages, mask, loss_type="cispo")
    assert close(loss, (-0.2 * sum(L0) + 2 * 0.2 * sum(L1)) / 5)
    assert close(stats["cispo_clip_ratio"], 3 / 5)  # the A > 0 tokens, all with r > 0.2


def test_cispo_weight_carries_no_gradient():
    # d/dlogp of -sg[min(r, eps_max)] A logp is -min(r, eps_max) A / N: the weight is a constant
    logp, old_logp, advantages, mask, _ = make_batch()
    logp.requires_grad_(True)
    policy_loss(logp, old_logp, advantages, mask, loss_type="cispo", clip_eps_high=CISPO_EPS_MAX)[0].backward()
    expected = torch.tensor([[-1.5, -0.5, -1.331], [2 * 1.5, 2 * 0.2, 0.0]], dtype=torch.float64) / 5
    torch.testing.assert_close(logp.grad, expected)


def test_vespo_weight_is_one_on_policy_and_shrinks_off_policy():
    # phi(1) = 1; phi peaks at w = k / lambda and decays for large w
    logp = torch.zeros(2, 2, dtype=torch.float64)
    advantages = torch.tensor([1.0, -1.0], dtype=torch.float64)
    for shift, expected in [(0.0, (1.0, 1.0)), (0.5, (math.exp(3 - 3 * math.e) * math.e**2,
                                                       math.exp(2 - 2 * math.e) * math.e**3))]:
        old_logp = logp - shift  # log w = 2 * shift
        _, stats = policy_loss(logp, old_logp, advantages, loss_type="vespo")
        assert close(stats["vespo/phi_seq_mean"], sum(expected) / 2, tol=1e-12)


@pytest.mark.parametrize("loss_type, ratio_level, match", [
    ("vespo", "sequence", r"loss_type='vespo' needs ratio_level='token', got ratio_level='sequence'"),
])
def test_invalid_loss_type_ratio_level_combinations_raise(loss_type, ratio_level, match):
    logp, old_logp, advantages, mask, _ = make_batch()
    with pytest.raises(ValueError, match=match):
        policy_loss(logp, old_logp, advantages, mask, loss_type=loss_type, ratio_level=ratio_level)
    with pytest.raises(ValueError, match=match):
        check_loss_options(loss_type, ratio_level)


@pytest.mark.parametrize("loss_type", ["cispo", "sapo", "vespo"])
@pytest.mark.parametrize("option", ["delta", "dual_clip"])
def test_clip_bounds_need_a_clipped_loss_type(loss_type, option):
    logp, old_logp, advantages, mask, _ = make_batch()
    with pytest.raises(ValueError, match=rf"{option}=1.5 bounds the clipped surrogate .* loss_type='{loss_type}' "
                                         rf"has none: set {option}=None"):
        policy_loss(logp, old_logp, advantages, mask, loss_type=loss_type, **{option: 1.5})


# --------------------------------------------------------------------------- on-policy behaviour


ALLOWED = list(SURROGATE)


@pytest.mark.parametrize("loss_type, ratio_level", ALLOWED)
@pytest.mark.parametrize("per_token_advantages", [False, True])
def test_on_policy_gradient_direction(loss_type, ratio_level, per_token_advantages):
    torch.manual_seed(0)
    old_logp = -torch.rand(4, 5, dtype=torch.float64) * 3
    logp = old_logp.clone().requires_grad_(True)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[1, 3:] = False
    mask[3, 1:] = False
    if per_token_advantages:
        advantages = torch.tensor([[1.0, -2.0, 0.5, -0.5, 3.0]] * 4, dtype=torch.float64)
        token_adv = advantages
    else:
        advantages = torch.tensor([1.5, -1.0, 0.5, -2.0], dtype=torch.float64)
        token_adv = advantages[:, None].expand(4, 5)

    loss, stats = policy_loss(logp, old_logp, advantages, mask, ratio_level=ratio_level, loss_type=loss_type)
    loss.backward()

    # On-policy every ratio is 1 and nothing is clipped; each token's loss is c_t * -A_t with
    #   c = 1 for the clipped surrogates,
    #   c = sigmoid(0) * 4 / tau = 2 / tau for sapo (tau = 1 where A > 0, 1.05 elsewhere),
    #   c = min(1, eps_max) * logp = 0.2 logp for cispo (eps_max falls back to clip_eps, as in TRL),
    #   c = phi(1) * logp = logp for vespo,
    # aggregated as the loss type says.
    m = mask.double()
    x = old_logp
    tau = torch.where(token_adv > 0, torch.tensor(1.0, dtype=x.dtype), torch.tensor(1.05, dtype=x.dtype))
    coef = {"sapo": 2 / tau, "cispo": 0.2 * x, "vespo": x}.get(loss_type, 1.0)
    per_token = -coef * token_adv * m
    if loss_type in ("grpo", "sapo"):
        expected = (per_token.sum(1) / m.sum(1)).mean()
    elif loss_type == "dr_grpo":
        expected = per_token.sum() / (4 * 5)
    elif loss_type == "luspo":
        expected = per_token.sum(1).mean()
    else:
        expected = per_token.sum() / m.sum()
    assert close(loss, expected.item(), tol=1e-12)
    if loss_type == "cispo":  # the cap 0.2 < 1 binds at every token with A > 0 (TRL's count)
        if ratio_level == "sequence" and not per_token_advantages:  # counted over sequences
            share = (advantages > 0).double().mean().item()
        else:
            share = ((token_adv > 0) * m).sum().item() / m.sum().item()
        assert close(stats["cispo_clip_ratio"], share)
    else:
        assert stats.get("clip_frac", torch.zeros(())).item() == 0.0
    assert stats["approx_kl"].item() == 0.0
    assert stats["ratio_mean"].item() == 1.0
    if loss_type == "vespo":
        assert stats["vespo/phi_seq_mean"].item() == 1.0

    # A gradient-descent step raises logp where A > 0, lowers it where A < 0, and leaves
    # padding alone; sapo's soft gate has the slope of the ratio itself at r = 1.
    step = -logp.grad
    assert torch.all(step[mask & (token_adv > 0)] > 0)
    assert torch.all(step[mask & (token_adv < 0)] < 0)
    assert torch.all(step[~mask] == 0)
    if loss_type == "sapo":
        grpo = old_logp.clone().requires_grad_(True)
        policy_loss(grpo, old_logp, advantages, mask, ratio_level=ratio_level, loss_type="grpo")[0].backward()
        torch.testing.assert_close(logp.grad, grpo.grad, rtol=1e-12, atol=1e-15)


def test_on_policy_loss_is_minus_mean_advantage():
    logp = -torch.rand(3, 4, dtype=torch.float64)
    advantages = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    for loss_type in ("grpo", "bnpo", "dr_grpo", "dapo"):
        loss, _ = policy_loss(logp, logp, advantages, loss_type=loss_type)
        assert close(loss, -advantages.mean().item(), tol=1e-12), loss_type
    # luspo sums each sequence's T = 4 tokens
    loss, _ = policy_loss(logp, logp, advantages, loss_type="luspo", ratio_level="sequence")
    assert close(loss, -4 * advantages.mean().item(), tol=1e-12)


def trl_reference_loss(logp, old_logp, advantages, mask, ref_logp, *, loss_type, ratio_level, eps_low=0.2,
                       eps_high=0.28, delta=None, off_policy_mask_threshold=None, beta=0.0, bias_correction=False,
                       max_len=None):
    """A plain transcription of TRL 1.16's GRPOTrainer._compute_loss (no vLLM, no entropy mask):
    the sequence ratio is broadcast as a [S, 1] tensor whose gradient flows through the mean."""
    adv = advantages.unsqueeze(1)
    m = mask.double()
    log_ratio = logp - old_logp
    if ratio_level == "token":
        log_w = log_ratio
    else:
        log_w = ((log_ratio * m).sum(-1) / m.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    coef_1 = torch.exp(log_w)
    kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
    if bias_correction:
        kl = kl * coef_1
    if loss_type == "cispo":
        loss = -torch.clamp(coef_1, max=eps_high).detach() * adv * logp
    elif loss_type == "sapo":
        tau = torch.where(adv > 0, torch.tensor(1.0, dtype=adv.dtype), torch.tensor(1.05, dtype=adv.dtype))
        loss = -(torch.sigmoid(tau * (coef_1 - 1)) * 4 / tau) * adv
    elif loss_type == "vespo":
        seq = (log_ratio.detach().clamp(-20, 20) * m).sum(-1, keepdim=True).clamp(math.log(1e-8), 20)
        k = torch.where(adv >= 0, torch.tensor(2.0, dtype=adv.dtype), torch.tensor(3.0, dtype=adv.dtype))
        lam = torch.where(adv >= 0, torch.tensor(3.0, dtype=adv.dtype), torch.tensor(2.0, dtype=adv.dtype))
        phi = torch.exp(lam + k * seq - lam * torch.exp(seq))
        loss = -phi * adv * logp
    else:
        coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
        capped = coef_1 if delta is None else torch.clamp(coef_1, max=delta)
        loss = -torch.min(capped * adv, coef_2 * adv)
    if off_policy_mask_threshold is not None:
        seq_kl = ((old_logp - logp.detach()) * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1.0)
        loss = loss * ((adv >= 0) | (seq_kl <= off_policy_mask_threshold)).double()
    loss = loss + beta * kl
    if loss_type in ("grpo", "sapo"):
        return ((loss * m).sum(-1) / m.sum(-1).clamp(min=1.0)).mean()
    if loss_type in ("bnpo", "dapo", "cispo", "vespo"):
        return (loss * m).sum() / m.sum().clamp(min=1.0)
    if loss_type == "luspo":
        return (loss * m).sum(-1).mean()
    return (loss * m).sum() / (loss.size(0) * max_len)


@pytest.mark.parametrize("options", [
    {},
    {"delta": 1.3},
    {"off_policy_mask_threshold": 0.05},
    {"beta": 0.07},
    {"beta": 0.07, "bias_correction": True},
    {"beta": 0.07, "bias_correction": True, "off_policy_mask_threshold": 0.05, "delta": 1.3},
])
@pytest.mark.parametrize("loss_type, ratio_level", ALLOWED)
def test_matches_trl_transcription_value_and_gradient(loss_type, ratio_level, options):
    """Per-sequence advantages, random ratios: our loss (GSPO-token form included) has TRL's value
    and gradient for every allowed loss type, with and without each option."""
    if "delta" in options and loss_type not in CLIPPED_LOSS_TYPES:
        options = {k: v for k, v in options.items() if k != "delta"}
    torch.manual_seed(3)
    old_logp = -torch.rand(6, 5, dtype=torch.float64) * 2
    base = old_logp + 0.4 * torch.randn(6, 5, dtype=torch.float64)
    ref_logp = old_logp + 0.3 * torch.randn(6, 5, dtype=torch.float64)
    mask = torch.rand(6, 5) > 0.3
    mask[:, 0] = True
    advantages = torch.tensor([1.0, -1.0, 0.5, -2.0, 0.0, -0.3], dtype=torch.float64)

    logp = base.clone().requires_grad_(True)
    ours, _ = policy_loss(
        logp, old_logp, advantages, mask, ratio_level=ratio_level, loss_type=loss_type, clip_eps=0.2,
        clip_eps_high=0.28, max_len=7, delta=options.get("delta"),
        off_policy_mask_threshold=options.get("off_policy_mask_threshold"), ref_logp=ref_logp,
        kl_coef=options.get("beta", 0.0), use_bias_correction_kl=options.get("bias_correction", False),
    )
    ours.backward()
    ref = base.clone().requires_grad_(True)
    theirs = trl_reference_loss(ref, old_logp, advantages, mask, ref_logp, loss_type=loss_type,
                                ratio_level=ratio_level, max_len=7, **options)
    theirs.backward()
    assert close(ours, theirs.item(), tol=1e-12)
    torch.testing.assert_close(logp.grad, ref.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_gspo_token_form_matches_broadcast_sequence_ratio(loss_type):
    """With [S] advantages the GSPO-token form has the same value and gradient as
    broadcasting s_i = exp(mean_t log r) over the sequence (GSPO eq. 5 / TRL)."""
    torch.manual_seed(1)
    old_logp = -torch.rand(5, 6, dtype=torch.float64) * 2
    base = old_logp + 0.3 * torch.randn(5, 6, dtype=torch.float64)
    mask = torch.rand(5, 6) > 0.3
    mask[:, 0] = True
    advantages = torch.randn(5, dtype=torch.float64)

    logp = base.clone().requires_grad_(True)
    loss, _ = policy_loss(logp, old_logp, advantages, mask, ratio_level="sequence", loss_type=loss_type)
    loss.backward()

    ref = base.clone().requires_grad_(True)
    m = mask.double()
    seq_ratio = torch.exp(((ref - old_logp) * m).sum(1) / m.sum(1))[:, None]
    per_token = -torch.min(seq_ratio * advantages[:, None], seq_ratio.clamp(0.8, 1.2) * advantages[:, None])
    per_token = per_token.expand(5, 6)
    if loss_type == "grpo":
        ref_loss = ((per_token * m).sum(1) / m.sum(1)).mean()
    elif loss_type == "dr_grpo":
        ref_loss = (per_token * m).sum() / (5 * 6)
    else:
        ref_loss = (per_token * m).sum() / m.sum()
    ref_loss.backward()

    assert close(loss, ref_loss.item(), tol=1e-12)
    torch.testing.assert_close(logp.grad, ref.grad, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- KL


@pytest.mark.parametrize("kl_estimator", KL_ESTIMATORS)
def test_kl_to_identical_reference_is_exactly_zero(kl_estimator):
    logp, old_logp, advantages, mask, _ = make_batch()
    loss_kl, stats = policy_loss(
        logp, old_logp, advantages, mask, ref_logp=logp.clone(), kl_coef=0.5, kl_estimator=kl_estimator
    )
    loss_plain, _ = policy_loss(logp, old_logp, advantages, mask)
    assert stats["kl"].item() == 0.0
    assert loss_kl.item() == loss_plain.item()
    assert torch.all(kl_penalty(logp, logp.clone(), kl_estimator) == 0)


def test_kl_estimators_hand_computed():
    # d = logp - ref = ln 2:  k1 = ln2, k2 = ln2^2/2, k3 = 1/2 + ln2 - 1
    logp = torch.tensor([[LN2]], dtype=torch.float64)
    ref = torch.zeros(1, 1, dtype=torch.float64)
    assert close(kl_penalty(logp, ref, "k1"), LN2)
    assert close(kl_penalty(logp, ref, "k2"), LN2**2 / 2)
    assert close(kl_penalty(logp, ref, "k3"), LN2 - 0.5)


def test_kl_coef_zero_logs_kl_but_does_not_add_it():
    logp, old_logp, advantages, mask, ref_logp = make_batch()
    loss, stats = policy_loss(logp, old_logp, advantages, mask, ref_logp=ref_logp, kl_coef=0.0)
    assert close(loss, SURROGATE[("grpo", "token")])
    assert close(stats["kl"], sum(KL_SUMS["k3"]) / 5)


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("loss_type, ratio_level", ALLOWED)
def test_garbage_in_padding_never_leaks(loss_type, ratio_level):
    logp, old_logp, _, mask, ref_logp = make_batch()
    advantages = torch.tensor([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0]], dtype=torch.float64)
    options = dict(loss_type=loss_type, ratio_level=ratio_level, ref_logp=ref_logp, kl_coef=0.1,
                   use_bias_correction_kl=True, off_policy_mask_threshold=0.6)
    clean_logp = logp.clone().requires_grad_(True)
    clean, _ = policy_loss(clean_logp, old_logp, advantages, mask, **options)
    clean.backward()

    pad = mask == 0
    dirty_logp = logp.masked_fill(pad, -math.inf).requires_grad_(True)
    dirty, stats = policy_loss(
        dirty_logp, old_logp.masked_fill(pad, math.nan), advantages.masked_fill(pad, math.nan),
        mask.bool(), **{**options, "ref_logp": ref_logp.masked_fill(pad, math.inf)},
    )
    dirty.backward()
    assert dirty.item() == pytest.approx(clean.item(), abs=1e-12)
    assert torch.isfinite(dirty_logp.grad).all()
    torch.testing.assert_close(dirty_logp.grad, clean_logp.grad)
    assert all(torch.isfinite(v) for v in stats.values())


def test_low_precision_inputs_are_computed_in_float32():
    logp, old_logp, advantages, mask, _ = make_batch()
    loss, _ = policy_loss(logp.bfloat16(), old_logp.bfloat16(), advantages.bfloat16(), mask)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(SURROGATE[("grpo", "token")], abs=2e-2)


def test_matches_plain_loop_reference_on_random_inputs():
    torch.manual_seed(2)
    num_seqs, num_tokens = 6, 7
    old_logp = -torch.rand(num_seqs, num_tokens, dtype=torch.float64) * 2
    logp = old_logp + 0.4 * torch.randn(num_seqs, num_tokens, dtype=torch.float64)
    ref_logp = old_logp + 0.2 * torch.randn(num_seqs, num_tokens, dtype=torch.float64)
    mask = torch.rand(num_seqs, num_tokens) > 0.25
    mask[:, 0] = True
    advantages = torch.randn(num_seqs, dtype=torch.float64)
    eps_low, eps_high, beta = 0.2, 0.28, 0.05

    # plain loops over python floats: token ratio, k3 KL, grpo and bnpo aggregation
    per_seq, total, count = [], 0.0, 0
    for i in range(num_seqs):
        seq_sum, seq_count = 0.0, 0
        for t in range(num_tokens):
            if not mask[i, t]:
                continue
            r = math.exp(logp[i, t].item() - old_logp[i, t].item())
            a = advantages[i].item()
            clipped = min(max(r, 1 - eps_low), 1 + eps_high)
            x = ref_logp[i, t].item() - logp[i, t].item()
            token_loss = -min(r * a, clipped * a) + beta * (math.exp(x) - x - 1)
            seq_sum, seq_count = seq_sum + token_loss, seq_count + 1
        per_seq.append(seq_sum / seq_count)
        total, count = total + seq_sum, count + seq_count

    common = dict(clip_eps=eps_low, clip_eps_high=eps_high, ref_logp=ref_logp, kl_coef=beta)
    grpo, _ = policy_loss(logp, old_logp, advantages, mask, loss_type="grpo", **common)
    bnpo, _ = policy_loss(logp, old_logp, advantages, mask, loss_type="bnpo", **common)
    dr_grpo, _ = policy_loss(logp, old_logp, advantages, mask, loss_type="dr_grpo", max_len=10, **common)
    assert close(grpo, sum(per_seq) / num_seqs, tol=1e-12)
    assert close(bnpo, total / count, tol=1e-12)
    assert close(dr_grpo, total / (num_seqs * 10), tol=1e-12)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"loss_type": "ppo"},
         r"loss_type must be one of \('grpo', 'bnpo', 'dr_grpo', 'dapo', 'cispo', 'sapo', 'luspo', 'vespo'\), got 'ppo'"),
        ({"ratio_level": "seq"}, r"ratio_level must be one of \('token', 'sequence'\), got 'seq'"),
        ({"kl_estimator": "k4", "ref_logp": "ref"}, r"kl_estimator must be one of \('k1', 'k2', 'k3'\), got 'k4'"),
        ({"clip_eps": 0.0}, r"clip_eps must be > 0, got 0.0"),
        ({"clip_eps": -0.1}, r"clip_eps must be > 0, got -0.1"),
        ({"clip_eps_high": 0.0}, r"clip_eps_high must be > 0 or None, got 0.0"),
        ({"dual_clip": 1.0}, r"dual_clip must be > 1 or None, got 1.0"),
        ({"dual_clip": 0.5}, r"dual_clip must be > 1 or None, got 0.5"),
        ({"delta": 1.0}, r"delta must be a finite number > 1.0 or None, got 1.0"),
        ({"off_policy_mask_threshold": -0.1}, r"off_policy_mask_threshold must be a finite number >= 0.0 or None"),
        ({"loss_type": "sapo", "sapo_temperature_neg": 0.0}, r"sapo_temperature_neg must be a finite number > 0.0"),
        ({"loss_type": "vespo", "vespo_lambda_pos": -1.0}, r"vespo_lambda_pos must be a finite number > 0.0"),
        ({"loss_type": "vespo", "vespo_k_neg": -1.0}, r"vespo_k_neg must be a finite number >= 0.0"),
        ({"kl_coef": 0.1}, r"kl_coef=0.1 > 0 needs ref_logp, got ref_logp=None"),
        ({"kl_coef": -0.1, "ref_logp": "ref"}, r"kl_coef must be >= 0, got -0.1"),
        ({"loss_type": "dr_grpo", "max_len": 2}, r"max_len must be an int >= T = 3"),
        ({"old_logp": torch.zeros(2, 4)}, r"old_logp must have shape \[S, T\] like logp = \[2, 3\], got \[2, 4\]"),
        ({"advantages": torch.zeros(3)}, r"advantages must have shape \[S\] = \[2\] or \[S, T\] = \[2, 3\], got \[3\]"),
        ({"mask": torch.ones(2, 2)}, r"mask must have shape like logp = \[2, 3\], got \[2, 2\]"),
        ({"ref_logp": torch.zeros(3, 3)}, r"ref_logp must have shape \[S, T\] like logp = \[2, 3\], got \[3, 3\]"),
        ({"logp": torch.zeros(6)}, r"logp must have shape \[S, T\], got \[6\]"),
    ],
)
def test_bad_arguments_fail_with_clear_messages(overrides, match):
    logp, old_logp, advantages, mask, ref_logp = make_batch()
    kwargs = dict(logp=logp, old_logp=old_logp, advantages=advantages, mask=mask)
    kwargs.update(overrides)
    if kwargs.get("ref_logp") == "ref":
        kwargs["ref_logp"] = ref_logp
    with pytest.raises(ValueError, match=match):
        policy_loss(**kwargs)


# --------------------------------------------------------------------------- value loss


# values v = [1.0, 2.0, 3.0], old = [1.5, 1.5, 1.5], returns R = [2.0, 0.0, 3.5], eps = 0.2
#   v_clip = old + clip(v - old, -0.2, 0.2) = [1.3, 1.7, 1.7]
#   (v - R)^2      = [1.0, 4.0, 0.25]
#   (v_clip - R)^2 = [0.49, 2.89, 3.24]
#   max            = [1.0, 4.0, 3.24]   (clipped term larger only for the 3rd)
VALUES = [1.0, 2.0, 3.0]
OLD_VALUES = [1.5, 1.5, 1.5]
RETURNS = [2.0, 0.0, 3.5]


@pytest.mark.parametrize(
    "clip_eps, mask, expected",
    [
        (None, None, 0.5 * (1.0 + 4.0 + 0.25) / 3),
        (0.2, None, 0.5 * (1.0 + 4.0 + 3.24) / 3),
        (0.2, [1.0, 1.0, 0.0], 0.5 * (1.0 + 4.0) / 2),
        (10.0, None, 0.5 * (1.0 + 4.0 + 0.25) / 3),  # a wide clip never binds
    ],
)
def test_value_loss_hand_computed(clip_eps, mask, expected):
    values = torch.tensor(VALUES, dtype=torch.float64)
    mask = None if mask is None else torch.tensor(mask)
    loss, stats = value_loss(
        values, torch.tensor(OLD_VALUES, dtype=torch.float64), torch.tensor(RETURNS, dtype=torch.float64),
        mask=mask, clip_eps=clip_eps,
    )
    assert close(loss, expected)
    assert close(stats["value_loss"], expected)
    if clip_eps == 0.2 and mask is None:
        assert close(stats["value_clip_frac"], 1 / 3)


def test_value_loss_gradient_is_cut_where_clipped():
    values = torch.tensor(VALUES, dtype=torch.float64, requires_grad=True)
    loss, _ = value_loss(
        values, torch.tensor(OLD_VALUES, dtype=torch.float64), torch.tensor(RETURNS, dtype=torch.float64),
        clip_eps=0.2,
    )
    loss.backward()
    # d/dv 0.5 * (v - R)^2 / 3 = (v - R) / 3 for the first two; the third uses v_clip (constant)
    torch.testing.assert_close(values.grad, torch.tensor([-1.0 / 3, 2.0 / 3, 0.0], dtype=torch.float64))


def test_value_loss_errors():
    v = torch.zeros(3)
    with pytest.raises(ValueError, match=r"returns must have shape like values = \[3\], got \[4\]"):
        value_loss(v, v, torch.zeros(4))
    with pytest.raises(ValueError, match=r"clip_eps must be > 0 or None, got 0"):
        value_loss(v, v, v, clip_eps=0)


def test_explained_variance():
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(y, y).item() == 1.0
    assert explained_variance(torch.full_like(y, 2.5), y).item() == 0.0
    # residual [0.5, -0.5, 0.5, -0.5]: var 0.25; var(y) = 1.25 -> 1 - 0.2 = 0.8
    assert explained_variance(y + torch.tensor([0.5, -0.5, 0.5, -0.5]), y).item() == pytest.approx(0.8)
    assert math.isnan(explained_variance(y, torch.ones(4)).item())
    # the masked entry is ignored
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0])
    assert explained_variance(torch.tensor([1.0, 2.0, 3.0, 100.0]), y, mask=mask).item() == 1.0


# --------------------------------------------------------------------------- the loss families, one by one


def sanitised_batch():
    """The shared fixture as the families see it: float64, zero on padding, [S, 1] advantages."""
    logp, old_logp, advantages, mask, ref_logp = make_batch()
    valid = mask.bool()
    return (torch.where(valid, logp, 0.0), torch.where(valid, old_logp, 0.0), advantages[:, None], mask,
            torch.where(valid, ref_logp, 0.0))


def real(x, mask):
    """The real tokens of a [2, 3] tensor, row by row (seq 1's third token is padding), or the values
    of a [2, 1] one."""
    return x[mask.bool()].tolist() if x.shape[-1] == 3 else x[:, 0].tolist()


def flat(rows):
    return [value for row in rows for value in row]


def test_importance_ratio_per_token_and_per_sequence():
    logp, old_logp, _, mask, _ = sanitised_batch()
    token = importance_ratio(logp, old_logp, mask, "token")
    assert real(token.value, mask) == pytest.approx(flat([[2.0, 0.5, 1.331], [1.8, 0.2]]))
    sequence = importance_ratio(logp, old_logp, mask, "sequence")
    assert sequence.value.shape == (2, 1) and real(sequence.value, mask) == pytest.approx([1.1, 0.6])
    # GSPO-token form: the sequence ratio at every token, and the token log-ratios kept for the rest
    assert real(sequence.ratio, mask) == pytest.approx(flat([[1.1, 1.1, 1.1], [0.6, 0.6]]))
    torch.testing.assert_close(sequence.log_ratio, token.log_ratio)


def test_clipped_surrogate_terms_hand_computed():
    logp, old_logp, adv, mask, _ = sanitised_batch()
    ratio = importance_ratio(logp, old_logp, mask).ratio
    terms = clipped_surrogate(ratio, adv, clip_eps=0.2)
    # the table above the SURROGATE grid
    assert real(terms.per_token, mask) == pytest.approx(flat([[-1.2, -0.5, -1.2], [3.6, 1.6]]))
    assert real(terms.clipped_high, mask) == flat([[True, False, True], [False, False]])
    assert real(terms.clipped_low, mask) == flat([[False, False, False], [False, True]])
    assert terms.dual_clipped is None
    assert set(terms.unreduced_stats()) == {"clip_frac", "clip_frac_low", "clip_frac_high"}
    # the dual clip c = 1.25 bounds seq 1 token 0 at -c A = 2.5, and only it
    dual = clipped_surrogate(ratio, adv, clip_eps=0.2, dual_clip=1.25)
    assert real(dual.per_token, mask) == pytest.approx(flat([[-1.2, -0.5, -1.2], [2.5, 1.6]]))
    assert real(dual.dual_clipped, mask) == flat([[False, False, False], [True, False]])
    assert "dual_clip_frac" in dual.unreduced_stats()
    # delta = 1.5 caps the unclipped branch: seq 1 token 0 gives -min(1.5 * -2, 1.2 * -2) = 3
    capped = clipped_surrogate(ratio, adv, clip_eps=0.2, delta=1.5)
    assert real(capped.per_token, mask) == pytest.approx(flat([[-1.2, -0.5, -1.2], [3.0, 1.6]]))


@pytest.mark.parametrize("loss_type, expected", [
    ("grpo", (-2.9 / 3 + 5.2 / 2) / 2), ("bnpo", 2.3 / 5), ("dapo", 2.3 / 5), ("dr_grpo", 2.3 / 8),
    ("luspo", (-2.9 + 5.2) / 2),
])
def test_aggregations_of_the_clipped_surrogate(loss_type, expected):
    logp, old_logp, adv, mask, _ = sanitised_batch()
    per_token = clipped_surrogate(importance_ratio(logp, old_logp, mask).ratio, adv).per_token
    assert close(aggregate(per_token, mask, loss_type, max_len=4), expected)


def test_cispo_surrogate_terms_hand_computed():
    logp, old_logp, adv, mask, _ = sanitised_batch()
    terms = cispo_surrogate(importance_ratio(logp, old_logp, mask).value, adv, logp, eps_max=CISPO_EPS_MAX)
    assert real(terms.weight, mask) == pytest.approx(flat([[1.5, 0.5, 1.331], [1.5, 0.2]]))
    assert real(terms.capped, mask) == flat([[True, False, False], [False, False]])
    expected = [[-1.5 * L0[0], -0.5 * L0[1], -1.331 * L0[2]], [2 * 1.5 * L1[0], 2 * 0.2 * L1[1]]]
    assert real(terms.per_token, mask) == pytest.approx(flat(expected))
    assert set(terms.unreduced_stats()) == {"cispo_clip_ratio", "clip_frac"}


def test_sapo_surrogate_terms_hand_computed():
    logp, old_logp, adv, mask, _ = sanitised_batch()
    terms = sapo_surrogate(importance_ratio(logp, old_logp, mask).ratio, adv, temperature_pos=1.0,
                           temperature_neg=1.05)
    gate = [[4 * sig(1.0), 4 * sig(-0.5), 4 * sig(0.331)], [4 / 1.05 * sig(0.84), 4 / 1.05 * sig(-0.84)]]
    assert real(terms.gate, mask) == pytest.approx(flat(gate))
    assert real(terms.per_token, mask) == pytest.approx(flat([[-g for g in gate[0]], [2 * g for g in gate[1]]]))
    assert terms.unreduced_stats() == {}  # a soft gate clips nothing


def test_vespo_surrogate_terms_hand_computed():
    logp, old_logp, adv, mask, _ = sanitised_batch()
    terms = vespo_surrogate(logp - old_logp, adv, logp, mask)
    assert real(terms.phi, mask) == pytest.approx(list(PHI))
    expected = [[-PHI[0] * x for x in L0], [2 * PHI[1] * x for x in L1]]
    assert real(terms.per_token, mask) == pytest.approx(flat(expected))
    assert set(terms.unreduced_stats()) == {"vespo/phi_seq_mean"}


def test_off_policy_mask_drops_the_drifted_negative_sequence():
    # mean_t (old_logp - logp): seq 0 -ln 1.1 (A > 0: kept anyway), seq 1 -ln 0.6 = 0.511 (A < 0)
    logp, old_logp, adv, mask, _ = sanitised_batch()
    assert off_policy_mask(logp, old_logp, mask, adv, 0.5)[:, 0].tolist() == [True, False]
    assert off_policy_mask(logp, old_logp, mask, adv, 0.52)[:, 0].tolist() == [True, True]


# --------------------------------------------------------------------------- PolicyLossOptions


def counting_validation(monkeypatch):
    counted = []
    check = PolicyLossOptions.__post_init__

    def counting(self):
        counted.append(self.loss_type)
        check(self)

    monkeypatch.setattr(PolicyLossOptions, "__post_init__", counting)
    return counted


def test_options_are_validated_once_not_per_call(monkeypatch):
    logp, old_logp, advantages, mask, ref_logp = make_batch()
    counted = counting_validation(monkeypatch)
    options = PolicyLossOptions(loss_type="dapo", kl_coef=0.1, kl_estimator="k2", dual_clip=1.25)
    assert counted == ["dapo"]
    results = [policy_loss(logp, old_logp, advantages, mask, options, ref_logp=ref_logp) for _ in range(3)]
    assert counted == ["dapo"]  # given options are not checked again
    keyword, _ = policy_loss(logp, old_logp, advantages, mask, loss_type="dapo", kl_coef=0.1, kl_estimator="k2",
                             dual_clip=1.25, ref_logp=ref_logp)
    assert counted == ["dapo", "dapo"]  # the keyword form checks them on every call
    # the same loss either way: dapo's dual-clipped token mean (-2.9 + 2.5 + 1.6) / 5, plus k2's KL
    expected = (-2.9 + 2.5 + 1.6) / 5 + 0.1 * aggregate_sums(*KL_SUMS["k2"], "dapo")
    for loss, _ in results:
        assert close(loss, expected)
    assert close(keyword, expected)


def test_options_are_frozen_and_replace_checks_the_copy():
    options = PolicyLossOptions(clip_eps_high=0.28)
    assert options.eps_high == 0.28 and PolicyLossOptions().eps_high == 0.2
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.clip_eps = 0.5
    with pytest.raises(ValueError, match=r"clip_eps must be > 0, got -1"):
        dataclasses.replace(options, clip_eps=-1)


@pytest.mark.parametrize("fields, match", [
    ({"kl_estimator": "k5"}, r"kl_estimator must be one of \('k1', 'k2', 'k3'\), got 'k5'"),
    ({"loss_type": "ppo"}, r"loss_type must be one of \('grpo', .*'vespo'\), got 'ppo'"),
    ({"max_len": 0}, r"max_len must be an int >= 1 \(the longest possible sequence\) or None, got 0"),
    ({"max_len": 2.5}, r"max_len must be an int >= 1"),
    ({"use_bias_correction_kl": "yes"}, r"use_bias_correction_kl must be True or False, got 'yes'"),
    ({"clip_eps": "0.2"}, r"clip_eps must be > 0, got '0.2'"),
    ({"loss_type": "cispo", "dual_clip": 2.0}, r"dual_clip=2.0 bounds the clipped surrogate"),
])
def test_bad_options_fail_when_built(fields, match):
    with pytest.raises(ValueError, match=match):
        PolicyLossOptions(**fields)


def test_options_and_keywords_do_not_mix():
    logp, old_logp, advantages, mask, _ = make_batch()
    with pytest.raises(ValueError, match=r"either as `options` or as keywords, not both: got options and clip_eps"):
        policy_loss(logp, old_logp, advantages, mask, PolicyLossOptions(), clip_eps=0.1)
    with pytest.raises(ValueError, match=r"options must be a PolicyLossOptions, got dict"):
        policy_loss(logp, old_logp, advantages, mask, {"clip_eps": 0.1})
    with pytest.raises(TypeError, match="clip_epsilon"):
        policy_loss(logp, old_logp, advantages, mask, clip_epsilon=0.1)


# --------------------------------------------------------------------------- luspo with token ratios (TRL 1.16)


def test_luspo_with_token_ratios_warns_and_computes_trls_result():
    # the token-level clipped surrogate of the grid, each sequence's tokens summed, then the mean over
    # sequences: (-2.9 + 5.2) / 2; k3's KL sums (1/2, ln2 - 1/2) aggregate alike
    logp, old_logp, advantages, mask, ref_logp = make_batch()
    logp.requires_grad_(True)
    with pytest.warns(UserWarning, match=r"loss_type='luspo' with ratio_level='token' computes TRL 1.16's result"):
        loss, stats = policy_loss(logp, old_logp, advantages, mask, loss_type="luspo", ratio_level="token",
                                  ref_logp=ref_logp, kl_coef=0.1)
    assert close(stats["policy_loss"], (-2.9 + 5.2) / 2)
    assert close(loss, (-2.9 + 5.2) / 2 + 0.1 * (0.5 + LN2 - 0.5) / 2)
    for name, value in CLIP_STATS["token"].items():
        assert close(stats[name], value), name
    loss.backward()
    # seq 0 token 1 (r = 0.5, A = +1, unclipped): d/dlogp of -r A / S = -0.5 / 2, plus the KL's
    # 0.1 * (1 - exp(ref - logp)) / S = 0.1 * (1 - 1) / 2 there (d = 0)
    assert logp.grad[0, 1].item() == pytest.approx(-0.5 / 2)
    assert logp.grad[0, 0].item() == pytest.approx(0.1 * (1 - 0.5) / 2)  # high-clipped: only the KL, d = ln2


@pytest.mark.parametrize("options", [{}, {"delta": 1.3, "beta": 0.07, "bias_correction": True}])
def test_luspo_with_token_ratios_matches_trl_transcription(options):
    # four sequences of 7, 5, 3 and 1 tokens: the per-sequence sums differ in length
    gen = torch.Generator().manual_seed(5)
    old_logp, noise, ref_noise = (torch.rand(3, 4, 7, generator=gen, dtype=torch.float64) - 0.5)
    old_logp = old_logp - 1.5
    base, ref_logp = old_logp + 0.8 * noise, old_logp + 0.6 * ref_noise
    mask = torch.arange(7) < torch.tensor([7, 5, 3, 1])[:, None]
    advantages = torch.tensor([0.7, -1.2, 1.5, -0.4], dtype=torch.float64)
    logp = base.clone().requires_grad_(True)
    with pytest.warns(UserWarning, match="luspo"):
        ours, _ = policy_loss(logp, old_logp, advantages, mask, ratio_level="token", loss_type="luspo",
                              clip_eps_high=0.28, delta=options.get("delta"), ref_logp=ref_logp,
                              kl_coef=options.get("beta", 0.0),
                              use_bias_correction_kl=options.get("bias_correction", False))
    ours.backward()
    ref = base.clone().requires_grad_(True)
    theirs = trl_reference_loss(ref, old_logp, advantages, mask, ref_logp, loss_type="luspo", ratio_level="token",
                                **options)
    theirs.backward()
    assert close(ours, theirs.item(), tol=1e-12)
    torch.testing.assert_close(logp.grad, ref.grad, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- the options from the run config


def test_run_config_builds_every_loss_option():
    cfg = RunConfig(loss_type="dapo", ratio_level="sequence", clip_eps=0.1, clip_eps_high=0.28, dual_clip=3.0,
                    delta=4.0, off_policy_mask_threshold=0.5, kl_coef=0.2, kl_estimator="k2",
                    use_bias_correction_kl=True)
    options = cfg.loss_options(max_len=9)
    assert {f.name for f in dataclasses.fields(PolicyLossOptions)} - {"max_len"} <= {
        f.name for f in dataclasses.fields(RunConfig)}
    assert options == PolicyLossOptions(loss_type="dapo", ratio_level="sequence", clip_eps=0.1, clip_eps_high=0.28,
                                        dual_clip=3.0, delta=4.0, off_policy_mask_threshold=0.5, kl_coef=0.2,
                                        kl_estimator="k2", use_bias_correction_kl=True, max_len=9)
    assert RunConfig(loss_type="vespo", vespo_k_neg=2.5).loss_options().vespo_k_neg == 2.5


@pytest.mark.parametrize("fields, match", [
    ({"kl_estimator": "k4", "kl_coef": 0.1}, r"kl_estimator='k4' is invalid: expected one of \('k1', 'k2', 'k3'\)"),
    ({"dual_clip": 1.0}, r"dual_clip=1.0 is invalid: expected a finite number > 1.0"),
    ({"dual_clip": 2.0, "loss_type": "sapo"},
     r"dual_clip=2.0 bounds the clipped surrogate .* loss_type='sapo' has none"),
    ({"kl_estimator": "k1"}, r"kl.estimator"),  # no KL term without kl_coef > 0: the setting would do nothing
])
def test_run_config_refuses_bad_dual_clip_and_kl_estimator(fields, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(**fields)


def test_run_config_luspo_with_token_ratios_warns():
    with pytest.warns(UserWarning, match="luspo"):
        options = RunConfig(loss_type="luspo").loss_options()
    assert (options.loss_type, options.ratio_level) == ("luspo", "token")


def test_dual_clip_and_kl_estimator_are_command_line_options():
    from marl_grpo.rl.config import PRESETS
    from marl_grpo.run.presets import parse_with_preset

    cfg = parse_with_preset(["--dual-clip", "1.25", "--kl-estimator", "k1", "--kl-coef", "0.1"], PRESETS, "tiny",
                            "marl-grpo train", "")
    assert (cfg.dual_clip, cfg.kl_estimator, cfg.kl_coef) == (1.25, "k1", 0.1)
    default = PRESETS["tiny"]
    assert (default.dual_clip, default.kl_estimator) == (None, "k3")


def tiny_update(cfg):
    """One `policy_update` over the shared fixture; logp depends on one parameter (zero) so that it
    has a gradient, and the learning rate is 0 so that every minibatch sees the same policy."""
    logp, old_logp, advantages, mask, ref_logp = make_batch()
    shift = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def log_probs(rows):
        return logp[rows] + shift, torch.zeros_like(logp[rows])

    batch = UpdateBatch(advantages=advantages, log_probs=log_probs, num_units=2, old_logp=old_logp,
                        ref_logp=ref_logp, mask=mask)
    return policy_update(batch, torch.optim.SGD([shift], lr=0.0), [shift], cfg)


def test_dual_clip_and_kl_estimator_reach_the_loss_through_the_update(monkeypatch):
    cfg = RunConfig(update_epochs=1, num_minibatches=1, ent_coef=0.0, kl_coef=0.1, kl_estimator="k1",
                    dual_clip=1.25, max_grad_norm=10.0)
    stats = tiny_update(cfg)
    # test_dual_clip's first row: seq 1 token 0 bounded at 2.5; k1's KL sums (0, ln2), grpo's aggregation
    policy = (-2.9 / 3 + 4.1 / 2) / 2
    assert stats["losses/policy_loss"] == pytest.approx(policy)
    assert stats["losses/dual_clip_frac"] == pytest.approx(1 / 5)
    assert stats["losses/kl"] == pytest.approx(LN2 / 5)
    assert stats["losses/total_loss"] == pytest.approx(policy + 0.1 * aggregate_sums(0.0, LN2, "grpo"))
    k3 = tiny_update(dataclasses.replace(cfg, kl_estimator="k3"))
    assert k3["losses/kl"] == pytest.approx((0.5 + LN2 - 0.5) / 5)


def test_the_update_builds_the_options_once(monkeypatch):
    cfg = RunConfig(update_epochs=2, num_minibatches=2, ent_coef=0.0, loss_type="dapo")
    counted = counting_validation(monkeypatch)
    seen = []

    def recording(*args, **kwargs):
        seen.append(kwargs["options"])
        return policy_loss(*args, **kwargs)

    monkeypatch.setattr(marl_grpo.run.update, "policy_loss", recording)
    tiny_update(cfg)
    assert counted == ["dapo"]  # once per update, for its 2 x 2 minibatches
    assert len(seen) == 4 and all(options is seen[0] for options in seen)
    assert seen[0] == cfg.loss_options()
