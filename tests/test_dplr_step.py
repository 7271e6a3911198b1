"""The per-step DPLR (RWKV-7) kernel of ``ops.dplr_step`` against the per-step reference ``ops.dplr.dplr_naive``:
values, final state and every gradient, the state carried across calls, and which kernel the RWKV-7 layer runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from omnirl_core.model import ModelConfig, OmniRL
from omnirl_core.model.layers import common
from omnirl_core.model.layers.rwkv7 import W_SCALE, RWKV7Block
from omnirl_core.model.ops import dplr_step
from omnirl_core.model.ops.dplr import dplr_chunked, dplr_naive, rwkv7_naive
from omnirl_core.model.ops.dplr_step import dplr_recurrent, rwkv7_recurrent

pytestmark = pytest.mark.skipif(not dplr_step.HAVE_NUMBA, reason=f"numba: {dplr_step.NUMBA_ERROR}")
torch.set_num_threads(1)

SHAPES = [  # (B, T, H, K, V): T prime or odd, so no segment of checkpoint_every steps comes out even
    (1, 1, 1, 4, 4),
    (2, 37, 2, 16, 16),
    (1, 53, 1, 64, 64),
    (2, 29, 3, 12, 20),
    (3, 19, 2, 8, 5),
]
NAMES = ("q", "k", "v", "alpha", "beta", "gk", "s0")


def _inputs(B, T, H, K, V, seed=0, dtype=torch.float32):
    """RWKV-7-like inputs: alpha = -kk, beta = kk * a with kk unit norm, log decays in [-exp(-0.5), 0]."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=g)
    k = torch.randn(B, T, H, K, generator=g) * 0.5
    v = torch.randn(B, T, H, V, generator=g)
    kk = F.normalize(torch.randn(B, T, H, K, generator=g), dim=-1)
    alpha, beta = -kk, kk * torch.rand(B, T, H, K, generator=g)
    gk = -W_SCALE * torch.rand(B, T, H, K, generator=g)
    s0 = torch.randn(B, H, K, V, generator=g)
    return [x.to(dtype) for x in (q, k, v, alpha, beta, gk, s0)]


def _run(fn, inputs, with_state=True, **kw):
    """Outputs, final state and the gradients of a random linear function of both w.r.t. every input."""
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    o, s = fn(*leaves[:6], initial_state=leaves[6] if with_state else None, **kw)
    g = torch.Generator().manual_seed(123)
    loss = (o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum()
    loss = loss + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    loss.backward()
    return o.detach(), s.detach(), [x.grad for x in leaves]


def _close(a, b, tol=2e-5):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_state", [False, True])
def test_step_kernel_matches_naive(shape, with_state):
    x = _inputs(*shape, seed=sum(shape))
    o1, s1, g1 = _run(dplr_naive, x, with_state)  # scale defaults to K ** -0.5 in both
    o2, s2, g2 = _run(dplr_recurrent, x, with_state)
    _close(o2, o1)
    _close(s2, s1)
    for name, a, b in zip(NAMES, g2, g1):
        if name == "s0" and not with_state:
            assert a is None and b is None
            continue
        scale = b.abs().max().clamp_min(1.0)  # gradients grow with T: compare relative to their size
        _close(a / scale, b / scale, tol=5e-5)


@pytest.mark.parametrize("shape", SHAPES + [(4, 2, 3, 16, 16)])
def test_without_gradients_the_forward_loops_alone_match_naive(shape, monkeypatch):
    """Nothing to differentiate (online acting): the loops without the autograd function give the same values."""
    x = _inputs(*shape, seed=sum(shape) + 1)
    o1, s1 = dplr_naive(*x[:6], initial_state=x[6])
    monkeypatch.setattr(dplr_step._DplrRecurrence, "apply", lambda *a: pytest.fail("autograd function ran"))
    with torch.no_grad():
        o2, s2 = dplr_recurrent(*x[:6], initial_state=x[6])
    _close(o2, o1)
    _close(s2, s1)
    o3, _ = dplr_recurrent(*x[:6])  # no input requires a gradient: the same path, from a zero state
    _close(o3, dplr_naive(*x[:6])[0])


@pytest.mark.parametrize("every", [1, 3, 16, 1000])
def test_checkpoint_interval_changes_nothing(every):
    """The backward pass recomputes states between checkpoints: any interval gives the same gradients."""
    x = _inputs(2, 41, 2, 8, 8, seed=4)
    o1, s1, g1 = _run(dplr_naive, x)
    o2, s2, g2 = _run(dplr_recurrent, x, checkpoint_every=every)
    _close(o2, o1)
    _close(s2, s1)
    for a, b in zip(g2, g1):
        _close(a, b, tol=1e-4)


def test_gradcheck_float64():
    """Finite differences of the kernel itself (float64 inputs run in float64), across three checkpoint segments."""
    x = [t.requires_grad_(True) for t in _inputs(2, 7, 2, 3, 4, seed=1, dtype=torch.float64)]

    def f(q, k, v, alpha, beta, gk, s0):
        return dplr_recurrent(q, k, v, alpha, beta, gk, scale=0.7, initial_state=s0, checkpoint_every=3)

    assert f(*x)[0].dtype == f(*x)[1].dtype == torch.float64
    assert torch.autograd.gradcheck(f, x, eps=1e-6, atol=1e-7, rtol=1e-6)


def test_carried_state_equals_one_pass_values_and_gradients():
    """Two calls, the second starting from the first's final state (not detached), equal one call over the
    concatenation: outputs, final state, and the gradients of every input, through the carried state too."""
    x = _inputs(2, 45, 2, 16, 16, seed=9)
    cut = 21  # not a multiple of the checkpoint interval

    def split(q, k, v, alpha, beta, gk, initial_state=None):
        xs = (q, k, v, alpha, beta, gk)
        o_a, s_a = dplr_recurrent(*(t[:, :cut] for t in xs), initial_state=initial_state)
        o_b, s_b = dplr_recurrent(*(t[:, cut:] for t in xs), initial_state=s_a)
        return torch.cat([o_a, o_b], dim=1), s_b

    o1, s1, g1 = _run(dplr_recurrent, x)
    o2, s2, g2 = _run(split, x)
    _close(o2, o1, tol=1e-6)
    _close(s2, s1, tol=1e-6)
    for a, b in zip(g2, g1):
        _close(a, b, tol=1e-5)


def test_rwkv7_convention_and_dtypes():
    q, k, v, alpha, beta, gk, s0 = _inputs(1, 20, 2, 8, 8, seed=2)
    o1, s1 = rwkv7_naive(q, gk, k, v, alpha, beta, initial_state=s0)  # scale 1
    o2, s2 = rwkv7_recurrent(q, gk, k, v, alpha, beta, initial_state=s0)
    _close(o2, o1)
    _close(s2, s1)
    o3, s3 = rwkv7_recurrent(*(t.double() for t in (q, gk, k, v, alpha, beta)), initial_state=s0.double())
    assert o3.dtype == s3.dtype == torch.float64
    _close(o3.float(), o1)
    half = [t.bfloat16() for t in (q, gk, k, v, alpha, beta)]  # computed in float32, o in v's dtype, like naive
    o4, s4 = rwkv7_recurrent(*half, initial_state=s0)
    o5, s5 = rwkv7_naive(*half, initial_state=s0)
    assert o4.dtype == o5.dtype == torch.bfloat16 and s4.dtype == s5.dtype == torch.float32
    _close(o4.float(), o5.float(), tol=1e-2)
    _close(s4, s5)
    # non-contiguous inputs (a transposed copy viewed back) give the same
    tq = q.transpose(0, 2).contiguous().transpose(0, 2)
    assert not tq.is_contiguous()
    _close(rwkv7_recurrent(tq, gk, k, v, alpha, beta, initial_state=s0)[0], o1)


def test_empty_sequence_and_nan_propagation():
    q, k, v, alpha, beta, gk, s0 = _inputs(1, 6, 1, 4, 4, seed=3)
    o, s = dplr_recurrent(q[:, :0], k[:, :0], v[:, :0], alpha[:, :0], beta[:, :0], gk[:, :0], initial_state=s0)
    assert o.shape == (1, 0, 1, 4)
    _close(s, s0)
    v = v.clone()
    v[0, 3, 0, 1] = float("nan")  # a NaN written at step 3 reaches every later output
    o, s = dplr_recurrent(q, k, v, alpha, beta, gk, initial_state=s0)
    assert torch.isfinite(o[:, :3]).all() and torch.isnan(o[:, 3:]).any(dim=-1).all() and torch.isnan(s).any()


def test_other_devices_and_missing_numba_are_refused(monkeypatch):
    x = _inputs(1, 3, 1, 4, 4)
    with pytest.raises(ValueError, match="runs on CPU tensors"):
        dplr_recurrent(*(t.to("meta") for t in x[:6]))
    monkeypatch.setattr(dplr_step, "HAVE_NUMBA", False)
    monkeypatch.setattr(dplr_step, "NUMBA_ERROR", "ModuleNotFoundError: No module named 'numba'")
    with pytest.raises(RuntimeError, match="needs numba .*No module named 'numba'"):
        dplr_recurrent(*x[:6])


# ------------------------------------------------------------------------------------------ the RWKV-7 layer


@pytest.fixture
def fresh_reports(monkeypatch):
    monkeypatch.setattr(common, "_REPORTED", set())
    monkeypatch.setattr(common, "_CHOICES", {})


def _model(head_dim: int, backend: str = "torch") -> OmniRL:
    cfg = ModelConfig(backbone="rwkv7", layout="compact", ns_max=4, na=5, hidden_size=32, num_layers=2,
                      intermediate_size=48, head_dim=head_dim, chunk_size=8, backend=backend)
    torch.manual_seed(0)
    model = OmniRL(cfg)
    with torch.no_grad():  # RWKV-7 initialises some output matrices to zero: perturb so every path matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _batch(B: int = 2, T: int = 37):
    g = torch.Generator().manual_seed(1)
    return (torch.randint(0, 5, (B, T), generator=g), torch.randint(0, 8, (B, T), generator=g),
            torch.randint(0, 5, (B, T), generator=g), torch.randn(B, T, generator=g))


def _layer_run(model, batch, cut=16):
    """Logits over two calls (memory carried), and the gradients of every parameter."""
    model.zero_grad(set_to_none=True)
    first = model(*(t[:, :cut] for t in batch))
    second = model(*(t[:, cut:] for t in batch), first[-1])
    logits = torch.cat([first[0], second[0]], dim=1)
    logits.square().mean().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_layer_runs_the_step_kernel_for_small_heads_and_says_so(backend, monkeypatch, fresh_reports, capsys):
    calls = []
    kernel = dplr_step.dplr_recurrent
    monkeypatch.setattr(dplr_step, "dplr_recurrent", lambda *a, **kw: calls.append(1) or kernel(*a, **kw))
    with common.kernel_record() as used:
        step = _layer_run(_model(16, backend), _batch())
    assert calls, "the per-step kernel did not run"
    said = used["RWKV-7"]
    assert len(said) == 1 and said[0].startswith(f"the PyTorch kernels of omnirl_core.model.ops (backend: {backend}")
    assert said[0].endswith("; per-step numba kernel dplr_step.dplr_recurrent (head dim 16 <= "
                            f"{dplr_step.STEP_MAX_HEAD_DIM} on cpu)")
    assert capsys.readouterr().err.count("[omnirl kernels] RWKV-7") == 1  # once, though two layers ran twice
    calls.clear()
    monkeypatch.setattr(dplr_step, "STEP_MAX_HEAD_DIM", 8)  # the same model through the chunked form
    chunked = _layer_run(_model(16, backend), _batch())
    assert not calls
    _close(step[0], chunked[0], tol=1e-5)
    assert step[1].keys() == chunked[1].keys()
    for name in step[1]:
        _close(step[1][name], chunked[1][name], tol=1e-4)


def test_layer_runs_the_chunked_form_above_the_limit(monkeypatch, fresh_reports, capsys):
    monkeypatch.setattr(dplr_step, "STEP_MAX_HEAD_DIM", 8)
    monkeypatch.setattr(dplr_step, "dplr_recurrent", lambda *a, **kw: pytest.fail("per-step kernel above the limit"))
    with common.kernel_record() as used:
        _layer_run(_model(16), _batch())
    assert used == {"RWKV-7": ["the PyTorch kernels of omnirl_core.model.ops (backend: torch)"]}


def test_without_numba_the_layer_says_once_that_it_falls_back(monkeypatch, fresh_reports, capsys):
    monkeypatch.setattr(dplr_step, "HAVE_NUMBA", False)
    monkeypatch.setattr(dplr_step, "NUMBA_ERROR", "ModuleNotFoundError: No module named 'numba'")
    with common.kernel_record() as used:
        _layer_run(_model(16), _batch())
        _layer_run(_model(16), _batch(T=5), cut=2)  # short calls too: nothing new is said
    assert used == {"RWKV-7": ["the PyTorch kernels of omnirl_core.model.ops (backend: torch); chunked form: numba "
                               "cannot be imported (ModuleNotFoundError: No module named 'numba'), and the faster "
                               "per-step kernel for head dim 16 needs it"]}
    err = capsys.readouterr().err
    assert err.count("[omnirl kernels]") == 1 and "numba cannot be imported" in err


def test_one_token_steps_use_the_kernel_and_equal_a_whole_pass(fresh_reports):
    """Acting token by token (T = 1) through the per-step kernel equals one pass over the sequence."""
    block = RWKV7Block(32, 48, 16, layer_idx=1, num_hidden_layers=2, backend="torch")
    torch.manual_seed(3)
    x, v_first = torch.randn(2, 9, 32), torch.randn(2, 9, 32)
    with torch.no_grad():
        y_all, s_all, _ = block(x, None, v_first)
        state, ys = None, []
        for t in range(9):
            y, state, _ = block.step(x[:, t], state, v_first[:, t])
            ys.append(y)
    _close(torch.stack(ys, dim=1), y_all, tol=1e-5)
    _close(state["wkv"], s_all["wkv"], tol=1e-5)


class _HostReads(TorchDispatchMode):
    """Counts reads of a tensor's value back to Python (``float(t)``): host syncs, graph breaks under compile."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


def test_chunked_form_skips_its_decay_check_given_rwkv7s_floor():
    q, k, v, alpha, beta, gk, s0 = _inputs(1, 70, 2, 8, 8, seed=5)
    with _HostReads() as unbounded:
        o1, s1 = dplr_chunked(q, k, v, alpha, beta, gk, initial_state=s0, chunk_size=32)
    with _HostReads() as bounded:
        o2, s2 = dplr_chunked(q, k, v, alpha, beta, gk, initial_state=s0, chunk_size=32, min_log_decay=-W_SCALE)
    assert unbounded.count == 1 and bounded.count == 0
    _close(o2, o1, tol=0)
    _close(s2, s1, tol=0)
    with _HostReads() as long_chunks:  # 256 steps at the floor can pass -MAX_CHUNK_DECAY: the check stays
        dplr_chunked(q, k, v, alpha, beta, gk, chunk_size=256, min_log_decay=-W_SCALE)
    assert long_chunks.count == 1


def test_the_kernel_leaves_torch_compile_unloaded():
    """Running the kernel imports neither torch._dynamo nor triton (Triton's interpreter, which tests and
    bench/gpu_check.py switch on first, must be on before triton is imported)."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from omnirl_core.model.ops.dplr_step import dplr_recurrent\n"
            "x = [torch.randn(1, 5, 1, 4, requires_grad=True) for _ in range(6)]\n"
            "o, s = dplr_recurrent(*x)\n"
            "(o.sum() + s.sum()).backward()\n"
            "print(sorted(m for m in ('torch._dynamo', 'triton') if m in sys.modules))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]"
