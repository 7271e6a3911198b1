"""Pure-PyTorch recurrent kernels: chunked == per-step, and both == flash-linear-attention's torch references."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from omnirl_core.model.ops.dplr import dplr_chunked, dplr_naive, rwkv7_chunked, rwkv7_naive
from omnirl_core.model.ops.gated_delta import gated_delta_chunked, gated_delta_naive
from omnirl_core.model.ops.gsa import gsa_chunked, gsa_naive
from omnirl_core.model.ops.simple_gla import simple_gla_chunked, simple_gla_naive

torch.set_num_threads(1)

SHAPES = [  # (B, T, H, K, V, chunk)
    (1, 1, 1, 4, 4, 8),
    (2, 37, 2, 8, 6, 8),
    (1, 64, 3, 16, 16, 16),
    (2, 50, 1, 12, 20, 32),
    (1, 70, 1, 8, 8, 64),
]


def _load_fla_naive(rel: str):
    """Load one of fla-core's torch reference files by path (importing ``fla.ops`` would need triton)."""
    spec = importlib.util.find_spec("fla")
    if spec is None or spec.submodule_search_locations is None:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.exists():
        return None
    try:
        mod_spec = importlib.util.spec_from_file_location("_fla_ref_" + path.stem + str(abs(hash(rel))), path)
        mod = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(mod)
    except ImportError:  # e.g. einops missing
        return None
    return mod


FLA_DPLR = _load_fla_naive("ops/generalized_delta_rule/dplr/naive.py")
FLA_GDN = _load_fla_naive("ops/gated_delta_rule/naive.py")
needs_fla_dplr = pytest.mark.skipif(FLA_DPLR is None, reason="fla-core (pip install fla-core==0.6.0) not installed")
needs_fla_gdn = pytest.mark.skipif(FLA_GDN is None, reason="fla-core (pip install fla-core==0.6.0) not installed")


def _dplr_inputs(B, T, H, K, V, seed=0, strong_decay=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=g)
    k = torch.randn(B, T, H, K, generator=g) * 0.5
    v = torch.randn(B, T, H, V, generator=g)
    kk = F.normalize(torch.randn(B, T, H, K, generator=g), dim=-1)
    a_gate = torch.rand(B, T, H, K, generator=g)
    alpha, beta = -kk, kk * a_gate  # RWKV-7's stable parametrisation
    if strong_decay:
        gk = F.logsigmoid(torch.randn(B, T, H, K, generator=g) * 2)
    else:
        gk = -0.6065306597126334 * torch.rand(B, T, H, K, generator=g)
    s0 = torch.randn(B, H, K, V, generator=g)
    return q, k, v, alpha, beta, gk, s0


def _gdn_inputs(B, T, H, K, V, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=g)
    k = F.normalize(torch.randn(B, T, H, K, generator=g), dim=-1)
    v = torch.randn(B, T, H, V, generator=g)
    beta = torch.rand(B, T, H, generator=g)
    gate = F.logsigmoid(torch.randn(B, T, H, generator=g) * 2)
    s0 = torch.randn(B, H, K, V, generator=g)
    return q, k, v, beta, gate, s0


def _grads(fn, inputs):
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    o, s = fn(*leaves)
    g = torch.Generator().manual_seed(123)
    loss = (o * torch.randn(o.shape, generator=g)).sum() + (s * torch.randn(s.shape, generator=g)).sum()
    loss.backward()
    return o.detach(), s.detach(), [x.grad for x in leaves]


def _close(a, b, tol=2e-4):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_state", [False, True])
def test_dplr_chunked_matches_naive(shape, with_state):
    B, T, H, K, V, C = shape
    q, k, v, alpha, beta, gk, s0 = _dplr_inputs(B, T, H, K, V, seed=T + K)

    def run(fn, **kw):
        def f(q, k, v, alpha, beta, gk, s0):
            return fn(q, k, v, alpha, beta, gk, initial_state=s0 if with_state else None, **kw)

        return _grads(f, (q, k, v, alpha, beta, gk, s0))

    o1, s1, g1 = run(dplr_naive)
    o2, s2, g2 = run(dplr_chunked, chunk_size=C)
    _close(o2, o1)
    _close(s2, s1)
    for name, a, b in zip("q k v alpha beta gk s0".split(), g2, g1):
        if name == "s0" and not with_state:
            continue
        _close(a, b, tol=1e-3)


def test_dplr_chunked_strong_decay_is_finite_and_exact():
    q, k, v, alpha, beta, gk, s0 = _dplr_inputs(1, 64, 2, 8, 8, seed=5, strong_decay=True)
    o1, s1 = dplr_naive(q, k, v, alpha, beta, gk, initial_state=s0)
    o2, s2 = dplr_chunked(q, k, v, alpha, beta, gk, initial_state=s0, chunk_size=16)
    assert torch.isfinite(o2).all()
    _close(o2, o1)
    _close(s2, s1)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_state", [False, True])
def test_gated_delta_chunked_matches_naive(shape, with_state):
    B, T, H, K, V, C = shape
    q, k, v, beta, gate, s0 = _gdn_inputs(B, T, H, K, V, seed=T + V)

    def run(fn, **kw):
        def f(q, k, v, beta, gate, s0):
            return fn(q, k, v, beta, gate, initial_state=s0 if with_state else None, **kw)

        return _grads(f, (q, k, v, beta, gate, s0))

    o1, s1, g1 = run(gated_delta_naive)
    o2, s2, g2 = run(gated_delta_chunked, chunk_size=C)
    _close(o2, o1)
    _close(s2, s1)
    for name, a, b in zip("q k v beta g s0".split(), g2, g1):
        if name == "s0" and not with_state:
            continue
        _close(a, b, tol=1e-3)


@pytest.mark.parametrize("kernel", ["dplr", "gdn"])
def test_split_with_carried_state_equals_one_pass(kernel):
    B, T, H, K, V = 2, 45, 2, 8, 8
    if kernel == "dplr":
        q, k, v, alpha, beta, gk, s0 = _dplr_inputs(B, T, H, K, V, seed=9)
        xs = (q, k, v, alpha, beta, gk)

        def fn(*a, initial_state=None):
            return dplr_chunked(*a, initial_state=initial_state, chunk_size=16)
    else:
        q, k, v, beta, gate, s0 = _gdn_inputs(B, T, H, K, V, seed=9)
        xs = (q, k, v, beta, gate)

        def fn(*a, initial_state=None):
            return gated_delta_chunked(*a, initial_state=initial_state, chunk_size=16)

    o_full, s_full = fn(*xs, initial_state=s0)
    cut = 20
    o_a, s_a = fn(*(x[:, :cut] for x in xs), initial_state=s0)
    o_b, s_b = fn(*(x[:, cut:] for x in xs), initial_state=s_a.detach())
    _close(torch.cat([o_a, o_b], dim=1), o_full)
    _close(s_b, s_full)


def test_rwkv7_wrappers_are_dplr_with_unit_scale():
    q, k, v, alpha, beta, gk, s0 = _dplr_inputs(1, 20, 2, 8, 8, seed=2)
    o1, s1 = rwkv7_naive(q, gk, k, v, alpha, beta, initial_state=s0)
    o2, s2 = rwkv7_chunked(q, gk, k, v, alpha, beta, initial_state=s0, chunk_size=8)
    o3, s3 = dplr_naive(q, k, v, alpha, beta, gk, scale=1.0, initial_state=s0)
    _close(o1, o3)
    _close(o2, o3)
    _close(s2, s3)


# ---------------------------------------------------------------------------------------------------
# Against flash-linear-attention's own torch references (fla-core 0.6.0)
# ---------------------------------------------------------------------------------------------------


@needs_fla_dplr
@pytest.mark.parametrize("shape", [(1, 16, 1, 8, 8), (2, 40, 2, 16, 12)])
@pytest.mark.parametrize("with_state", [False, True])
def test_dplr_against_fla_reference(shape, with_state):
    B, T, H, K, V = shape
    q, k, v, alpha, beta, gk, s0 = _dplr_inputs(B, T, H, K, V, seed=T)

    def ours(q, k, v, alpha, beta, gk, s0):
        return dplr_chunked(q, k, v, alpha, beta, gk, initial_state=s0 if with_state else None, chunk_size=16)

    def ref(q, k, v, alpha, beta, gk, s0):  # fla: [B, H, T, D], q always scaled by K^-0.5
        args = (x.transpose(1, 2) for x in (q, k, v, alpha, beta, gk))
        o, s = FLA_DPLR.dplr_recurrence(*args, initial_state=s0 if with_state else None, output_final_state=True)
        return o.transpose(1, 2), s

    o1, s1, g1 = _grads(ref, (q, k, v, alpha, beta, gk, s0))
    o2, s2, g2 = _grads(ours, (q, k, v, alpha, beta, gk, s0))
    _close(o2, o1)
    _close(s2, s1)
    for name, a, b in zip("q k v alpha beta gk s0".split(), g2, g1):
        if name == "s0" and not with_state:
            continue
        _close(a, b, tol=1e-3)


@needs_fla_dplr
def test_dplr_against_fla_chunkwise_reference():
    B, T, H, K, V = 1, 64, 2, 8, 8
    q, k, v, alpha, beta, gk, s0 = _dplr_inputs(B, T, H, K, V, seed=4)
    args = [x.transpose(1, 2) for x in (q, k, v, alpha, beta, gk)]
    o_ref, s_ref = FLA_DPLR.dplr_chunkwise(*args, initial_state=s0, output_final_state=True, chunk_size=16)
    o, s = dplr_chunked(q, k, v, alpha, beta, gk, initial_state=s0, chunk_size=32)
    _close(o, o_ref.transpose(1, 2))
    _close(s, s_ref)


@needs_fla_gdn
@pytest.mark.parametrize("shape", [(1, 16, 1, 8, 8), (2, 70, 2, 16, 12)])
@pytest.mark.parametrize("with_state", [False, True])
def test_gated_delta_against_fla_reference(shape, with_state):
    B, T, H, K, V = shape
    q, k, v, beta, gate, s0 = _gdn_inputs(B, T, H, K, V, seed=T)

    def ours(q, k, v, beta, gate, s0):
        return gated_delta_chunked(q, k, v, beta, gate, initial_state=s0 if with_state else None, chunk_size=32)

    def ref(q, k, v, beta, gate, s0):
        return FLA_GDN.naive_recurrent_gated_delta_rule(
            q, k, v, beta=beta, g=gate, initial_state=s0 if with_state else None, output_final_state=True
        )

    o1, s1, g1 = _grads(ref, (q, k, v, beta, gate, s0))
    o2, s2, g2 = _grads(ours, (q, k, v, beta, gate, s0))
    _close(o2, o1)
    _close(s2, s1)
    for name, a, b in zip("q k v beta g s0".split(), g2, g1):
        if name == "s0" and not with_state:
            continue
        _close(a, b, tol=1e-3)


@needs_fla_gdn
def test_gated_delta_against_fla_chunk_reference():
    q, k, v, beta, gate, s0 = _gdn_inputs(2, 100, 2, 16, 16, seed=8)
    o_ref, s_ref = FLA_GDN.naive_chunk_gated_delta_rule(
        q, k, v, g=gate, beta=beta, chunk_size=64, initial_state=s0, output_final_state=True
    )
    o, s = gated_delta_chunked(q, k, v, beta, gate, initial_state=s0, chunk_size=32)
    _close(o, o_ref)
    _close(s, s_ref)


def test_rwkv7_matches_the_official_value_by_key_formulation():
    """RWKV-7 as written by its authors, state [V, K]: S = S diag(w) + (S (-kk)) (kk a)^T + v k^T, o = S r."""
    B, T, H, K = 1, 19, 2, 8
    g = torch.Generator().manual_seed(3)
    r, k, v = (torch.randn(B, T, H, K, generator=g) for _ in range(3))
    kk = F.normalize(torch.randn(B, T, H, K, generator=g), dim=-1)
    a = torch.rand(B, T, H, K, generator=g)
    w = -0.6065306597126334 * torch.rand(B, T, H, K, generator=g)
    S = torch.zeros(B, H, K, K)  # [V, K]
    outs = []
    for t in range(T):
        sab = torch.einsum("bhvk,bhk->bhv", S, -kk[:, t])  # S a
        S = (
            S * w[:, t].exp().unsqueeze(-2)
            + sab.unsqueeze(-1) * (kk[:, t] * a[:, t]).unsqueeze(-2)
            + v[:, t].unsqueeze(-1) * k[:, t].unsqueeze(-2)
        )
        outs.append(torch.einsum("bhvk,bhk->bhv", S, r[:, t]))
    o_ref = torch.stack(outs, dim=1)
    o, s = rwkv7_chunked(r, w, k, v, -kk, kk * a, chunk_size=8)
    _close(o, o_ref)
    _close(s, S.transpose(-1, -2))  # ours is [K, V]


FLA_SGLA = _load_fla_naive("ops/simple_gla/naive.py")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_state", [False, True])
def test_simple_gla_chunked_matches_naive(shape, with_state):
    B, T, H, K, V, C = shape
    q, k, v, _, gate, s0 = _gdn_inputs(B, T, H, K, V, seed=T + 2 * V)

    def run(fn, **kw):
        def f(q, k, v, gate, s0):
            return fn(q, k, v, gate, initial_state=s0 if with_state else None, **kw)

        return _grads(f, (q, k, v, gate, s0))

    o1, s1, g1 = run(simple_gla_naive)
    o2, s2, g2 = run(simple_gla_chunked, chunk_size=C)
    _close(o2, o1)
    _close(s2, s1)
    for name, a, b in zip("q k v g s0".split(), g2, g1):
        if name == "s0" and not with_state:
            continue
        _close(a, b, tol=1e-3)


@pytest.mark.skipif(FLA_SGLA is None, reason="fla-core (pip install fla-core==0.6.0) not installed")
@pytest.mark.parametrize("with_state", [False, True])
def test_simple_gla_against_fla_reference(with_state):
    q, k, v, _, gate, s0 = _gdn_inputs(2, 45, 2, 8, 12, seed=1)
    init = s0 if with_state else None

    def ref(q, k, v, gate, s0):
        return FLA_SGLA.naive_recurrent_simple_gla(q, k, v, gate, initial_state=init, output_final_state=True)

    def ours(q, k, v, gate, s0):
        return simple_gla_chunked(q, k, v, gate, initial_state=init, chunk_size=16)

    o1, s1, g1 = _grads(ref, (q, k, v, gate, s0))
    o2, s2, g2 = _grads(ours, (q, k, v, gate, s0))
    _close(o2, o1)
    _close(s2, s1)
    for a, b in zip(g2[:4], g1[:4]):
        _close(a, b, tol=1e-3)


FLA_GSA = _load_fla_naive("ops/gsa/naive.py")


def _gsa_inputs(B, T, H, K, V, M, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = F.silu(torch.randn(B, T, H, K, generator=g))
    k = F.silu(torch.randn(B, T, H, K, generator=g))
    v = torch.randn(B, T, H, V, generator=g)
    f = F.logsigmoid(torch.randn(B, T, H, M, generator=g) * 3) / 8
    hk0 = torch.randn(B, H, K, M, generator=g)
    hv0 = torch.randn(B, H, M, V, generator=g)
    return q, k, v, f, hk0, hv0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_state", [False, True])
def test_gsa_chunked_matches_naive(shape, with_state):
    B, T, H, K, V, C = shape
    M = 5
    inputs = _gsa_inputs(B, T, H, K, V, M, seed=T)

    def run(fn, **kw):
        def f(q, k, v, f, hk0, hv0):
            o, (hk, hv) = fn(q, k, v, 1 - f.exp(), f, initial_state=(hk0, hv0) if with_state else None, **kw)
            return o, torch.cat([hk.flatten(2), hv.flatten(2)], dim=-1)

        return _grads(f, inputs)

    o1, s1, g1 = run(gsa_naive)
    o2, s2, g2 = run(gsa_chunked, chunk_size=C)
    _close(o2, o1)
    _close(s2, s1)
    for name, a, b in zip("q k v f hk0 hv0".split(), g2, g1):
        if name in ("hk0", "hv0") and not with_state:
            continue
        _close(a, b, tol=1e-3)


@pytest.mark.skipif(FLA_GSA is None, reason="fla-core (pip install fla-core==0.6.0) not installed")
@pytest.mark.parametrize("with_state", [False, True])
def test_gsa_against_fla_reference(with_state):
    q, k, v, f, hk0, hv0 = _gsa_inputs(2, 41, 2, 8, 6, 4, seed=3)
    init = (hk0, hv0) if with_state else None

    def ref(q, k, v, f):
        return FLA_GSA.naive_recurrent_gsa(
            q, k, v, 1 - f.exp(), f, scale=1.0, initial_state=init, output_final_state=True
        )

    def ours(q, k, v, f):
        return gsa_chunked(q, k, v, 1 - f.exp(), f, initial_state=init, chunk_size=16)

    leaves = [[x.clone().requires_grad_(True) for x in (q, k, v, f)] for _ in range(2)]
    results = []
    for fn, xs in zip((ref, ours), leaves):
        o, (hk, hv) = fn(*xs)
        (o.square().sum() + hk.sum() + hv.square().sum()).backward()
        results.append((o.detach(), hk.detach(), hv.detach(), [x.grad for x in xs]))
    (o1, hk1, hv1, g1), (o2, hk2, hv2, g2) = results
    _close(o2, o1)
    _close(hk2, hk1)
    _close(hv2, hv1)
    for a, b in zip(g2, g1):
        _close(a, b, tol=1e-3)


def test_chunked_kernels_stay_exact_under_extreme_decay():
    q, k, v, alpha, beta, _, s0 = _dplr_inputs(1, 40, 1, 8, 8, seed=6)
    gk = -torch.rand(1, 40, 1, 8) * 30  # far beyond RWKV-7's range: chunks are halved internally
    o1, s1 = dplr_naive(q, k, v, alpha, beta, gk, initial_state=s0)
    o2, s2 = dplr_chunked(q, k, v, alpha, beta, gk, initial_state=s0, chunk_size=32)
    assert torch.isfinite(o2).all()
    _close(o2, o1)
    _close(s2, s1)
    q, k, v, f, hk0, hv0 = _gsa_inputs(1, 40, 1, 8, 8, 4, seed=6)
    f = -torch.rand(1, 40, 1, 4) * 30
    o1, (a1, b1) = gsa_naive(q, k, v, 1 - f.exp(), f, initial_state=(hk0, hv0))
    o2, (a2, b2) = gsa_chunked(q, k, v, 1 - f.exp(), f, initial_state=(hk0, hv0), chunk_size=32)
    assert torch.isfinite(o2).all()
    _close(o2, o1)
    _close(b2, b1)
