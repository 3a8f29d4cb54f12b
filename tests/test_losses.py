"""Loss core against numbers worked out by hand, and a plain loop reference."""

import math

import pytest
import torch

from marl_grpo.losses import (
    KL_ESTIMATORS,
    LOSS_TYPES,
    explained_variance,
    kl_penalty,
    policy_loss,
    value_loss,
)

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
SURROGATE = {
    ("grpo", "token"): (-2.9 / 3 + 5.2 / 2) / 2,
    ("bnpo", "token"): 2.3 / 5,
    ("dapo", "token"): 2.3 / 5,
    ("dr_grpo", "token"): 2.3 / 6,
    ("grpo", "sequence"): 0.25,
    ("bnpo", "sequence"): -0.02,
    ("dapo", "sequence"): -0.02,
    ("dr_grpo", "sequence"): -0.1 / 6,
}

# Aggregated per-token KL, with d = logp - ref on the real tokens
#   seq 0: [ln2, 0, -ln2]   seq 1: [0, ln2]
# k1 = d:                     seq sums 0 and ln2
#   grpo (0/3 + ln2/2)/2 = ln2/4,  bnpo ln2/5,  dr_grpo ln2/6
# k2 = d^2/2 = q (q = ln2^2/2 at +-ln2): seq sums 2q and q
#   grpo (2q/3 + q/2)/2 = 7q/12,   bnpo 3q/5,   dr_grpo 3q/6
# k3 = exp(-d) + d - 1:  d=ln2 -> 1/2 + ln2 - 1 = ln2 - 1/2;  d=-ln2 -> 2 - ln2 - 1 = 1 - ln2
#   seq sums (ln2 - 1/2) + (1 - ln2) = 1/2 and ln2 - 1/2
#   grpo (1/6 + (ln2 - 1/2)/2)/2,  bnpo (1/2 + ln2 - 1/2)/5 = ln2/5,  dr_grpo ln2/6
Q = LN2**2 / 2
KL_AGG = {
    ("grpo", "k1"): LN2 / 4,
    ("bnpo", "k1"): LN2 / 5,
    ("dapo", "k1"): LN2 / 5,
    ("dr_grpo", "k1"): LN2 / 6,
    ("grpo", "k2"): 7 * Q / 12,
    ("bnpo", "k2"): 3 * Q / 5,
    ("dapo", "k2"): 3 * Q / 5,
    ("dr_grpo", "k2"): 3 * Q / 6,
    ("grpo", "k3"): (0.5 / 3 + (LN2 - 0.5) / 2) / 2,
    ("bnpo", "k3"): LN2 / 5,
    ("dapo", "k3"): LN2 / 5,
    ("dr_grpo", "k3"): LN2 / 6,
}
# kl stat = mean over the 5 real tokens: k1 ln2/5, k2 3q/5, k3 ln2/5
KL_STAT = {"k1": LN2 / 5, "k2": 3 * Q / 5, "k3": LN2 / 5}

# Stats in TRL's units:
#   token level: over the 5 real tokens; high-clipped 2, low-clipped 1
#   sequence level with [S] advantages: over the 2 sequences; seq 1 low-clipped
CLIP_STATS = {
    "token": {"clip_frac": 3 / 5, "clip_frac_low": 1 / 5, "clip_frac_high": 2 / 5,
              "ratio_mean": (2.0 + 0.5 + 1.331 + 1.8 + 0.2) / 5},
    "sequence": {"clip_frac": 1 / 2, "clip_frac_low": 1 / 2, "clip_frac_high": 0.0,
                 "ratio_mean": (1.1 + 0.6) / 2},
}
# approx_kl always uses the token ratio: mean over real tokens of (r - 1) - ln r
APPROX_KL = sum((r - 1) - math.log(r) for r in [2.0, 0.5, 1.331, 1.8, 0.2]) / 5


def close(actual, expected, tol=1e-9):
    return actual.item() == pytest.approx(expected, abs=tol)


# --------------------------------------------------------------------------- hand-computed grid


@pytest.mark.parametrize("kl_estimator", KL_ESTIMATORS)
@pytest.mark.parametrize("ratio_level", ["token", "sequence"])
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_policy_loss_hand_computed(loss_type, ratio_level, kl_estimator):
    logp, old_logp, advantages, mask, ref_logp = make_batch()
    kl_coef = 0.1
    loss, stats = policy_loss(
        logp, old_logp, advantages, mask,
        ratio_level=ratio_level, loss_type=loss_type,
        ref_logp=ref_logp, kl_coef=kl_coef, kl_estimator=kl_estimator,
    )
    surrogate = SURROGATE[(loss_type, ratio_level)]
    # the KL is added per token before aggregating, and every aggregation is linear
    assert close(loss, surrogate + kl_coef * KL_AGG[(loss_type, kl_estimator)])
    assert close(stats["policy_loss"], surrogate)
    assert close(stats["kl"], KL_STAT[kl_estimator])
    assert close(stats["approx_kl"], APPROX_KL)
    for name, expected in CLIP_STATS[ratio_level].items():
        assert close(stats[name], expected), name


def test_stats_are_detached_zero_dim_tensors():
    logp, old_logp, advantages, mask, ref_logp = make_batch()
    logp.requires_grad_(True)
    _, stats = policy_loss(logp, old_logp, advantages, mask, ref_logp=ref_logp, dual_clip=3.0)
    assert {"policy_loss", "clip_frac", "clip_frac_low", "clip_frac_high", "approx_kl",
            "ratio_mean", "kl", "dual_clip_frac"} <= set(stats)
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


# --------------------------------------------------------------------------- on-policy behaviour


@pytest.mark.parametrize("ratio_level", ["token", "sequence"])
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
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

    # On-policy every ratio is 1, so each token's loss is -A_t and nothing is clipped.
    m = mask.double()
    if loss_type == "grpo":
        expected = -((token_adv * m).sum(1) / m.sum(1)).mean()
    elif loss_type == "dr_grpo":
        expected = -(token_adv * m).sum() / (4 * 5)
    else:
        expected = -(token_adv * m).sum() / m.sum()
    assert close(loss, expected.item(), tol=1e-12)
    assert stats["clip_frac"].item() == 0.0
    assert stats["approx_kl"].item() == 0.0
    assert stats["ratio_mean"].item() == 1.0

    # A gradient-descent step raises logp where A > 0, lowers it where A < 0, and leaves
    # padding alone.
    step = -logp.grad
    assert torch.all(step[mask & (token_adv > 0)] > 0)
    assert torch.all(step[mask & (token_adv < 0)] < 0)
    assert torch.all(step[~mask] == 0)


def test_on_policy_loss_is_minus_mean_advantage():
    logp = -torch.rand(3, 4, dtype=torch.float64)
    advantages = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    for loss_type in LOSS_TYPES:
        loss, _ = policy_loss(logp, logp, advantages, loss_type=loss_type)
        assert close(loss, -advantages.mean().item(), tol=1e-12), loss_type


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
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
    assert close(stats["kl"], KL_STAT["k3"])


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("ratio_level", ["token", "sequence"])
def test_garbage_in_padding_never_leaks(ratio_level):
    logp, old_logp, _, mask, ref_logp = make_batch()
    advantages = torch.tensor([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0]], dtype=torch.float64)
    clean_logp = logp.clone().requires_grad_(True)
    clean, _ = policy_loss(clean_logp, old_logp, advantages, mask, ratio_level=ratio_level,
                           ref_logp=ref_logp, kl_coef=0.1)
    clean.backward()

    pad = mask == 0
    dirty_logp = logp.masked_fill(pad, -math.inf).requires_grad_(True)
    dirty, stats = policy_loss(
        dirty_logp, old_logp.masked_fill(pad, math.nan), advantages.masked_fill(pad, math.nan),
        mask.bool(), ratio_level=ratio_level, ref_logp=ref_logp.masked_fill(pad, math.inf), kl_coef=0.1,
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
        ({"loss_type": "ppo"}, r"loss_type must be one of \('grpo', 'bnpo', 'dr_grpo', 'dapo'\), got 'ppo'"),
        ({"ratio_level": "seq"}, r"ratio_level must be one of \('token', 'sequence'\), got 'seq'"),
        ({"kl_estimator": "k4", "ref_logp": "ref"}, r"kl_estimator must be one of \('k1', 'k2', 'k3'\), got 'k4'"),
        ({"clip_eps": 0.0}, r"clip_eps must be > 0, got 0.0"),
        ({"clip_eps": -0.1}, r"clip_eps must be > 0, got -0.1"),
        ({"clip_eps_high": 0.0}, r"clip_eps_high must be > 0 or None, got 0.0"),
        ({"dual_clip": 1.0}, r"dual_clip must be > 1 or None, got 1.0"),
        ({"dual_clip": 0.5}, r"dual_clip must be > 1 or None, got 0.5"),
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
