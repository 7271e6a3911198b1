"""fla-core's own Triton kernels on CPU tensors, through Triton's interpreter (``TRITON_INTERPRET=1``), fp32.

:func:`enable` must run before anything imports ``fla.ops``: ``triton.jit`` reads the interpreter switch when a
kernel is decorated, i.e. when fla's modules are imported. It then clears the three things that stand between the
interpreter and fla's kernels (each patch below says why), without editing fla or triton.

Everything here changes process-wide state (an environment variable read at import, triton's autotuner, globals
of fla's modules), so it runs in a child process of its own (``tests/test_fla_interpreter.py`` and
``bench/gpu_check.py --cpu`` start it); the pytest process that runs the rest of the suite never imports triton
in interpreter mode, and ``backend: auto`` there still picks our kernels for CPU tensors.

Run as a script, it prints one JSON object: the comparisons asked for on the command line (see :func:`main`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# backbone -> (fla module, the op its layer calls)
FLA_OPS = {
    "rwkv7": ("rwkv7", "chunk_rwkv7"),
    "gated_deltanet": ("gated_delta_rule", "chunk_gated_delta_rule"),
    "gsa": ("gsa", "chunk_gsa"),
    "mamba2": ("simple_gla", "chunk_simple_gla"),
}


# ------------------------------------------------------------------------------------------------ the fixture
def enable() -> None:
    """Switch the interpreter on, import the four fla ops the layers call, and patch what stops them."""
    if "fla.ops" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("fla.ops was imported before the Triton interpreter was switched on: its kernels are "
                           "compiled ones; call enable() first, in a fresh process")
    os.environ["TRITON_INTERPRET"] = "1"
    import triton

    _autotune_first_config_only(triton)
    modules = [importlib.import_module(f"fla.ops.{module}") for module, _ in FLA_OPS.values()]
    assert all(m is not None for m in modules)
    for name, module in list(sys.modules.items()):
        if name.startswith("fla.ops.") and module is not None and not name.endswith(".naive"):
            _give_loops_tensor_indices(module)
            _late_bind_language_builtins(module)


def _autotune_first_config_only(triton) -> None:
    """Patch 1. Triton's autotuner times every config on the device ("0 active drivers" without a GPU); with a
    single config it skips timing, and under the interpreter every config computes the same values, so each
    autotuned kernel keeps only its first. Patched on the class, which fla's own caching autotuner
    (``fla.ops.utils.cache``) subclasses, before fla decorates its kernels (at import)."""
    from triton.runtime.autotuner import Autotuner

    original = Autotuner.__init__

    def init(self, fn, arg_names, configs, *args, **kwargs):
        original(self, fn, arg_names, list(configs)[:1], *args, **kwargs)

    Autotuner.__init__ = init


class _LoopIndex(int):
    """An int that also answers ``.to(dtype)`` the way a compiled loop's induction variable (a scalar tensor)
    does; everything else behaves as the int it is, so host code in the same module is unaffected."""

    def to(self, dtype, *args, **kwargs):
        import numpy as np
        import triton.language as tl
        from triton.runtime.interpreter import TensorHandle

        scalar = tl.tensor(TensorHandle(np.array([int(self)], dtype=np.int32), tl.int32), tl.int32)
        return scalar.to(dtype, *args, **kwargs)


def _range(*args):
    return map(_LoopIndex, range(*args))


def _give_loops_tensor_indices(module) -> None:
    """Patch 2. Kernels write ``for i_t in range(NT): ... i_t.to(tl.int64)``; compiled, ``i_t`` is a tensor, but
    the interpreter runs the loop in Python, where it is an int without ``.to``. The kernel modules get a
    ``range`` whose items are :class:`_LoopIndex` (fla's naive torch references are left alone)."""
    module.range = _range


def _late_bind_language_builtins(module) -> None:
    """Patch 3. ``fla.ops.utils.op`` binds ``gather = tl.gather`` (and ``make_tensor_descriptor``) at import,
    and kernel modules import those names. The interpreter swaps ``tl``'s builtins for interpreted ones only for
    the duration of a kernel, on the ``tl`` module, so the early-bound originals fail ("_semantic argument must be
    provided"). Such names become a lookup of ``tl.<name>`` at call time."""
    import triton.language as tl

    by_identity = {id(v): k for k, v in vars(tl).items() if tl.core.is_builtin(v)}
    for attr, value in list(vars(module).items()):
        if tl.core.is_builtin(value) and id(value) in by_identity:
            setattr(module, attr, _late(by_identity[id(value)]))


def _late(name: str):
    import triton.language as tl

    def call(*args, **kwargs):
        return getattr(tl, name)(*args, **kwargs)

    call.__name__ = name
    return call


# ------------------------------------------------------------------------------------------------ breaking a call
@contextlib.contextmanager
def broken(backbone: str, how: str):
    """fla's op of ``backbone`` called wrongly on purpose: ``swap`` exchanges two of its tensor arguments (the
    ones our layer could plausibly mix up), ``no_state`` drops the carried memory, ``grad`` leaves the forward
    exact and scales the gradient that reaches one input by 0.9 (a wrong backward only)."""
    import torch

    from omnirl_core.model.layers import common

    module_name, op_name = FLA_OPS[backbone]
    module = importlib.import_module(f"fla.ops.{module_name}")
    op = getattr(module, op_name)
    swap = {"rwkv7": ("r", "k"), "gated_deltanet": ("q", "k"), "gsa": ("q", "k"), "mamba2": ("q", "k")}[backbone]

    class _ScaleGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.view_as(x)

        @staticmethod
        def backward(ctx, g):
            return 0.9 * g

    def wrong(**kw):
        if how == "swap":
            kw[swap[0]], kw[swap[1]] = kw[swap[1]], kw[swap[0]]
        elif how == "no_state":
            kw["initial_state"] = None
        elif how == "grad":
            kw["v"] = _ScaleGrad.apply(kw["v"])
        else:
            raise ValueError(f"unknown break {how!r}")
        return op(**kw)

    setattr(module, op_name, wrong)
    common._load_fla_op.cache_clear()
    common._CHOICES.clear()
    try:
        yield
    finally:
        setattr(module, op_name, op)
        common._load_fla_op.cache_clear()
        common._CHOICES.clear()


# ------------------------------------------------------------------------------------------------ comparisons
def _diff(a, b) -> dict:
    """max |a - b| and that over max |b| (b: the PyTorch path's value)."""
    a, b = a.detach().double(), b.detach().double()
    err = float((a - b).abs().max()) if a.numel() else 0.0
    scale = float(b.abs().max()) if b.numel() else 0.0
    return {"abs": err, "rel": err / max(scale, 1e-30)}


def _worst(diffs: list[dict]) -> dict:
    return {"abs": max(d["abs"] for d in diffs), "rel": max(d["rel"] for d in diffs)}


def hidden_size(head_dim: int) -> int:
    """Width of the test blocks: two heads at the quick model's head size 16, one at the paper's 64 (the
    interpreter's cost grows with batch x heads x chunks)."""
    return 2 * head_dim if head_dim < 64 else head_dim


def make_block(backbone: str, head_dim: int, backend: str, seed: int = 0):
    """One backbone block (layer 1 of 2 for RWKV-7, so its value residual to layer 0 runs too), its weights
    perturbed from init with a fixed seed (RWKV-7 zero-initialises its output projections, which would hide the
    kernel's output from every gradient)."""
    import torch

    from omnirl_core.model.layers import GatedDeltaNetBlock, GSABlock, Mamba2Block, RWKV7Block

    hidden = hidden_size(head_dim)
    torch.manual_seed(seed)
    if backbone == "rwkv7":
        block = RWKV7Block(hidden, 2 * hidden, head_dim, layer_idx=1, num_hidden_layers=2, backend=backend)
    elif backbone == "gated_deltanet":
        block = GatedDeltaNetBlock(hidden, 2 * hidden, head_dim=head_dim, num_heads=2, backend=backend)
    elif backbone == "gsa":
        block = GSABlock(hidden, 2 * hidden, head_dim=head_dim, backend=backend)
    else:
        block = Mamba2Block(hidden, head_dim=head_dim, state_size=head_dim, expand=1, backend=backend)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g) * max(float(p.abs().mean()), 0.1))
    return block


def layer_run(backbone: str, head_dim: int, backend: str, lengths=(70, 21), steps: int = 2, backward=True,
              seed: int = 0, batch: int = 2) -> dict:
    """Forward over a first chunk, a second chunk from its carried memory, then ``steps`` one-token ``step``
    calls (as online acting makes them); the loss weighs every output randomly; gradients of the inputs (and of
    layer 0's values for RWKV-7) and of every parameter."""
    import torch

    block = make_block(backbone, head_dim, backend, seed=seed)
    D = hidden_size(head_dim)
    g = torch.Generator().manual_seed(seed + 2)
    B, (T1, T2) = batch, lengths
    T = T1 + T2 + steps
    x = torch.randn(B, T, D, generator=g).requires_grad_(backward)
    v_first = torch.randn(B, T, D, generator=g).requires_grad_(backward) if backbone == "rwkv7" else None
    weights = torch.randn(B, T, D, generator=g)

    def vf(a, b):
        return None if v_first is None else v_first[:, a:b]

    y1, s1, _ = block(x[:, :T1], None, vf(0, T1))
    y2, s2, _ = block(x[:, T1:T1 + T2], s1, vf(T1, T1 + T2))
    ys, state = [], s2
    for t in range(T1 + T2, T):
        y_t, state, _ = block.step(x[:, t], state, None if v_first is None else v_first[:, t])
        ys.append(y_t)
    y3 = torch.stack(ys, 1) if ys else y2[:, :0]
    out = {"chunk 1": y1, "carried state": torch.cat([v.flatten() for _, v in sorted(s1.items())]),
           "chunk 2": y2, "steps": y3,
           "state after steps": torch.cat([v.flatten() for _, v in sorted(state.items())])}
    grads = {}
    if backward:
        loss = (torch.cat([y1, y2, y3], 1) * weights).sum()
        loss.backward()
        grads["d input"] = x.grad
        if v_first is not None:
            grads["d v_first"] = v_first.grad
        for name, p in block.named_parameters():
            grads[f"d {name}"] = p.grad if p.grad is not None else torch.zeros_like(p)
    return {"outputs": {k: v.detach() for k, v in out.items()}, "grads": {k: v.detach() for k, v in grads.items()}}


def compare_layer(backbone: str, head_dim: int, lengths=(70, 21), steps: int = 2, backward=True,
                  break_call: str | None = None, batch: int = 2) -> dict:
    """backend fla against backend torch, same weights and inputs: per quantity max abs and relative difference."""
    t0 = time.perf_counter()
    ref = layer_run(backbone, head_dim, "torch", lengths, steps, backward, batch=batch)
    with broken(backbone, break_call) if break_call else contextlib.nullcontext():
        fla = layer_run(backbone, head_dim, "fla", lengths, steps, backward, batch=batch)
    rows = {k: _diff(fla["outputs"][k], v) for k, v in ref["outputs"].items()}
    if backward:
        rows["d input"] = _diff(fla["grads"]["d input"], ref["grads"]["d input"])
        if "d v_first" in ref["grads"]:
            rows["d v_first"] = _diff(fla["grads"]["d v_first"], ref["grads"]["d v_first"])
        params = [k for k in ref["grads"] if k not in ("d input", "d v_first")]
        rows["d parameters"] = _worst([_diff(fla["grads"][k], ref["grads"][k]) for k in params])
        rows["d parameters"]["count"] = len(params)
        rows["d parameters"]["worst"] = max(params, key=lambda k: _diff(fla["grads"][k], ref["grads"][k])["rel"])
    return {"rows": rows, "seconds": time.perf_counter() - t0}


def compare_training(backbone: str = "rwkv7", iterations: int = 3, break_call: str | None = None) -> dict:
    """The whole model in the paper layout (four tokens a step), the paper profile shrunk by overrides: the
    training loop itself (``training.train``: state masking, chunks of 6 steps = 24 tokens with the memory
    carried, clipping, AdamW after a one-iteration warmup) for ``iterations`` with backend fla and with backend
    torch from the same weights and batches: the weights after, and how far training moved them."""
    import tempfile

    import torch

    from omnirl_core.model import OmniRL
    from omnirl_core.training import TrainConfig, train
    from omnirl_core.workbook import load_config

    t0 = time.perf_counter()
    over = ["device=cpu", "data.path=null", "model.hidden_size=32", "model.num_layers=2",
            "model.intermediate_size=64", "model.head_dim=16", "model.ns_max=16", f"model.backbone={backbone}",
            "data.batch_size=1", "data.seq_len=16", "chunk_len=6", "bf16=false", f"steps={iterations}",
            "optim.warmup_steps=1", "eval.every=0", f"checkpoint_every={iterations}", "launch.nproc_per_node=1",
            "torch_threads=1"]
    after, kernels, init = {}, {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("torch", "fla"):
            cfg = load_config(TrainConfig, ROOT / "params/paper/03_training.yaml",
                              overrides=[*over, f"model.backend={backend}"])
            assert cfg.model.layout == "paper" and cfg.loss.state_mask_prob > 0
            if init is None:  # train() seeds before it builds the model: both runs start from these weights
                torch.manual_seed(cfg.seed)
                init = OmniRL(cfg.model).state_dict()
            with broken(backbone, break_call) if (break_call and backend == "fla") else contextlib.nullcontext():
                res = train(cfg, Path(tmp) / backend, hooks=[], progress=False)
            after[backend] = {k: v.detach().clone() for k, v in res.model.state_dict().items()}
            kernels[backend] = json.loads((Path(tmp) / backend / "kernels.json").read_text())
    floats = [k for k, v in init.items() if v.is_floating_point()]
    moved = max(float((after["torch"][k] - init[k]).abs().max()) for k in floats)
    diff = max(float((after["fla"][k] - after["torch"][k]).abs().max()) for k in floats)
    return {"weights": {"abs": diff, "moved": moved, "iterations": iterations, "lr": cfg.optim.lr},
            "kernels": kernels, "seconds": time.perf_counter() - t0}


# the runs the tests make: lengths cross fla's chunk boundaries without being multiples of them (chunk_rwkv7's
# chunks are 16 steps, the other three ops' 64); the paper's head size 64 runs one sequence of one head
FULL_LENGTHS = {"rwkv7": (40, 21), "gated_deltanet": (70, 21), "gsa": (70, 21), "mamba2": (70, 21)}
BREAK_LENGTHS = (24, 8)


def run_case(case: str) -> dict:
    """``layer:BACKBONE:HEAD`` (everything), ``break:BACKBONE:HEAD:HOW`` (a short run with the call broken, the
    gradients only for ``grad``) or ``train:BACKBONE[:HOW]``."""
    kind, backbone, *rest = case.split(":")
    if kind == "train":  # the broken run needs fewer iterations to show
        return compare_training(backbone, iterations=2 if rest else 3, break_call=rest[0] if rest else None)
    head = int(rest[0])
    if kind == "layer":
        return compare_layer(backbone, head, FULL_LENGTHS[backbone], steps=2 if head < 64 else 1,
                             batch=2 if head < 64 else 1)
    how = rest[1]
    return compare_layer(backbone, head, BREAK_LENGTHS, steps=0, backward=how == "grad", break_call=how, batch=1)


def main(argv: list[str] | None = None) -> int:
    """``python tests/fla_interpreter.py CASE ...``: prints ``{case: result}`` as JSON (see :func:`run_case`)."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("cases", nargs="+")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    enable()
    import torch

    torch.set_num_threads(1)
    results = {}
    for case in args.cases:
        results[case] = run_case(case)
        print(f"{case}: {results[case]['seconds']:.1f} s", file=sys.stderr, flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
