"""Which kernel each layer runs: ``backend: auto`` takes fla's on a CUDA tensor, says so once, and every call into
an fla op binds to that op's real signature in the pinned fla-core and means what our PyTorch kernel means.

No GPU is needed: CUDA is faked (``common._on_gpu``) and the fla ops are stand-ins that bind their arguments to
the signatures read from the installed fla-core source (its ops need triton to import) and then compute with our
PyTorch kernels. A layer that passed an argument fla does not have, or the right tensors under the wrong names,
fails here.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from omnirl_core.model import ModelConfig, OmniRL
from omnirl_core.model.layers import common
from omnirl_core.model.ops import dplr_chunked, gated_delta_chunked, gsa_chunked, simple_gla_chunked

# backbone -> (fla module, op name, how the op's arguments map onto our kernel of the same rule)
FLA_OPS = {
    "rwkv7": ("rwkv7", "chunk_rwkv7", lambda a: dplr_chunked(a["r"], a["k"], a["v"], a["a"], a["b"], a["w"],
                                                              scale=a["scale"], initial_state=a["initial_state"])),
    "gated_deltanet": ("gated_delta_rule", "chunk_gated_delta_rule",
                       lambda a: gated_delta_chunked(a["q"], a["k"], a["v"], a["beta"], a["g"], scale=a["scale"],
                                                     initial_state=a["initial_state"])),
    "gsa": ("gsa", "chunk_gsa", lambda a: gsa_chunked(a["q"], a["k"], a["v"], a["s"], a["g"], scale=a["scale"],
                                                      initial_state=a["initial_state"])),
    "mamba2": ("simple_gla", "chunk_simple_gla", lambda a: simple_gla_chunked(a["q"], a["k"], a["v"], a["g"],
                                                                              scale=a["scale"],
                                                                              initial_state=a["initial_state"])),
}


@pytest.fixture(autouse=True)
def _fresh_reports(monkeypatch):
    load = common._load_fla_op  # cached per process: each test starts from what its own patches import
    monkeypatch.setattr(common, "_REPORTED", set())
    monkeypatch.setattr(common, "_CHOICES", {})
    load.cache_clear()
    yield
    load.cache_clear()


def _fla_root() -> Path:
    try:
        version = importlib.metadata.version("fla-core")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fla-core is not installed (it comes with the test extra)")
    assert version == common.FLA_CORE_VERSION, f"the layers are written against fla-core {common.FLA_CORE_VERSION}"
    spec = importlib.util.find_spec("fla")  # locates the package without running its __init__
    return Path(spec.submodule_search_locations[0])


def fla_signature(module: str, name: str) -> inspect.Signature:
    """The signature of ``fla.ops.<module>.<name>`` as written in the installed fla-core source."""
    pkg = _fla_root() / "ops" / module
    for node in ast.parse((pkg / "__init__.py").read_text()).body:
        if isinstance(node, ast.ImportFrom) and any(a.name == name for a in node.names):
            source = pkg / f"{node.module.replace('.', '/')}.py"
            break
    else:
        raise AssertionError(f"fla.ops.{module} does not export {name}")
    fn = next(n for n in ast.walk(ast.parse(source.read_text())) if isinstance(n, ast.FunctionDef) and n.name == name)
    args, params = fn.args, []
    positional = args.posonlyargs + args.args
    first_default = len(positional) - len(args.defaults)
    for i, a in enumerate(positional):
        default = inspect.Parameter.empty if i < first_default else None
        params.append(inspect.Parameter(a.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default))
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        params.append(inspect.Parameter(a.arg, inspect.Parameter.KEYWORD_ONLY,
                                        default=inspect.Parameter.empty if d is None else None))
    if args.vararg:
        params.append(inspect.Parameter(args.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    if args.kwarg:
        params.append(inspect.Parameter(args.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


def fake_fla_op(backbone: str, calls: list):
    """An fla op stand-in: binds the call to the real signature (no ``**kwargs`` catch-all), then our kernel."""
    module, name, ours = FLA_OPS[backbone]
    sig = fla_signature(module, name)
    strict = sig.replace(parameters=[p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD])

    def op(*args, **kwargs):
        bound = strict.bind(*args, **kwargs)  # TypeError on a name fla's op does not have, or a missing one
        bound.apply_defaults()
        calls.append(name)
        assert bound.arguments["output_final_state"] is True, "the state must come back to be carried"
        return ours(bound.arguments)

    return op


def tiny(backbone: str) -> ModelConfig:
    head = {"rwkv7": 8, "gated_deltanet": 8, "gsa": 8, "mamba2": 16}[backbone]
    return ModelConfig(backbone=backbone, layout="paper", ns_max=10, na=5, hidden_size=32, num_layers=2,
                       intermediate_size=48, head_dim=head, gdn_num_heads=2, chunk_size=8, backend="torch")


def batch(cfg: ModelConfig, B: int = 2, T: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, cfg.ns_max, (B, T), generator=g), torch.randint(0, 8, (B, T), generator=g),
            torch.randint(0, cfg.na, (B, T), generator=g), torch.randn(B, T, generator=g))


@pytest.mark.parametrize("backbone", sorted(FLA_OPS))
def test_auto_takes_fla_on_a_cuda_tensor_and_every_call_binds_to_fla_core(backbone, monkeypatch, capsys):
    module, name, _ = FLA_OPS[backbone]
    calls: list[str] = []
    fake = types.ModuleType(f"fla.ops.{module}")
    setattr(fake, name, fake_fla_op(backbone, calls))
    monkeypatch.setitem(sys.modules, f"fla.ops.{module}", fake)  # importable; fla.ops.utils is not
    monkeypatch.setattr(common, "_on_gpu", lambda x: True)

    cfg = tiny(backbone)
    torch.manual_seed(0)
    ours = OmniRL(cfg).eval()
    with torch.no_grad():  # off the symmetric initialisation (e.g. RWKV-7's a = b up to a constant at init)
        for p in ours.parameters():
            p.add_(0.1 * torch.randn_like(p))
    theirs = OmniRL(replace(cfg, backend="auto")).eval()
    theirs.load_state_dict(ours.state_dict())
    obs, tag, action, reward = batch(cfg)
    with torch.no_grad():
        ref, _, _ = ours(obs, tag, action, reward)
        capsys.readouterr()
        out, _, _ = theirs(obs, tag, action, reward)
        # the memory carried across two chunks through fla's op gives the same outputs
        _, _, st = theirs(obs[:, :24], tag[:, :24], action[:, :24], reward[:, :24])
        out2, _, _ = theirs(obs[:, 24:], tag[:, 24:], action[:, 24:], reward[:, 24:], st)
    assert calls and set(calls) == {name}, "auto on a CUDA tensor must call fla's kernel"
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out2, ref[:, 24:], rtol=1e-4, atol=1e-5)
    err = capsys.readouterr().err
    assert err.count("[omnirl kernels]") == 1 and f"fla.ops.{module}.{name} (backend: auto, CUDA tensor)" in err


def test_auto_says_once_why_fla_was_not_taken(monkeypatch, capsys):
    cfg = replace(tiny("rwkv7"), backend="auto")
    model = OmniRL(cfg).eval()
    with torch.no_grad():
        model(*batch(cfg))
        model(*batch(cfg, seed=1))
    err = capsys.readouterr().err
    assert err.count("[omnirl kernels]") == 1  # two layers, two forward passes: said once
    assert "RWKV-7: the PyTorch kernels of omnirl_core.model.ops (backend: auto, tensor on cpu" in err
    # on a CUDA tensor without an importable fla: the reason is the import error, still once
    monkeypatch.setattr(common, "_on_gpu", lambda x: True)
    monkeypatch.setitem(sys.modules, "fla.ops.rwkv7", None)
    common._load_fla_op.cache_clear()
    with torch.no_grad():
        model(*batch(cfg))
        model(*batch(cfg))
    err = capsys.readouterr().err
    assert err.count("[omnirl kernels]") == 1 and "fla.ops.rwkv7.chunk_rwkv7 cannot be imported" in err


def test_backend_fla_without_fla_fails_naming_the_op_and_torch_never_asks(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fla.ops.gsa", None)
    needs = r"GSA: backend 'fla' needs flash-linear-attention.*fla\.ops\.gsa\.chunk_gsa"
    with pytest.raises(RuntimeError, match=needs):
        OmniRL(replace(tiny("gsa"), backend="fla"))(*batch(tiny("gsa")))
    x = torch.zeros(1)
    monkeypatch.setattr(common, "_load_fla_op", lambda *a: pytest.fail("backend torch must not look for fla"))
    assert common.fla_kernel("GSA", x, "torch", "gsa", "chunk_gsa") is None
    assert "GSA: the PyTorch kernels of omnirl_core.model.ops (backend: torch)" in capsys.readouterr().err


def test_the_old_probe_would_have_been_caught(monkeypatch):
    """The former ``auto`` rule probed ``fla.ops.utils.contiguous`` (not in fla-core 0.6.0); with only the op
    module importable the rule must still pick fla's kernel."""
    monkeypatch.setitem(sys.modules, "fla.ops.utils", None)
    fake = types.ModuleType("fla.ops.rwkv7")
    fake.chunk_rwkv7 = lambda **kw: None
    monkeypatch.setitem(sys.modules, "fla.ops.rwkv7", fake)
    monkeypatch.setattr(common, "_on_gpu", lambda x: True)
    assert common.fla_kernel("RWKV-7", torch.zeros(1), "auto", "rwkv7", "chunk_rwkv7") is fake.chunk_rwkv7


@pytest.mark.slow
def test_gpu_check_script_runs_on_cpu_at_toy_sizes():
    """bench/gpu_check.py is run once on a lent GPU; its code path is exercised here first (torch vs torch)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "bench/gpu_check.py", "--cpu", "--tiny", "--iterations", "1"], cwd=root,
                         capture_output=True, text=True, timeout=600, env={**os.environ,
                                                                            "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    table = [line for line in res.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 2 * 4 + 3  # header, 4 backbones x 2 precisions, throughput, online step, smoke
    assert any(line.startswith("| online step,") and " ms per step " in line for line in table)
    assert all(line.endswith(("| yes |", "| - |", "| pass |")) for line in table)


def test_the_kernel_line_is_information_inside_a_jupyter_kernel(monkeypatch, capsys):
    """In a Jupyter kernel stderr renders as a warning box: there the line goes to the cell's ordinary output;
    elsewhere (command lines, logs) it stays on stderr."""
    common._report("RWKV-7", "RWKV-7: a path (a reason)")
    assert "[omnirl kernels] RWKV-7: a path" in capsys.readouterr().err

    class KernelStream:  # what sys.stderr is inside ipykernel
        def __init__(self):
            self.text = []

        def write(self, s):
            self.text.append(s)

        def flush(self):
            pass

    KernelStream.__module__ = "ipykernel.iostream"
    stream = KernelStream()
    monkeypatch.setattr(sys, "stderr", stream)
    common._report("RWKV-7", "RWKV-7: another path (a reason)")
    assert not stream.text and "[omnirl kernels] RWKV-7: another path" in capsys.readouterr().out
