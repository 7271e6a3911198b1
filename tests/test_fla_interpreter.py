"""The GPU route executed on a CPU: fla-core's own Triton kernels, run by Triton's interpreter in fp32, against our
PyTorch kernels, for the four backbones' layers and for training the whole model in the paper layout.

The comparisons run in two child processes (``tests/fla_interpreter.py``, started once for the module, side by
side): the interpreter is switched on by an environment variable read when fla's kernels are decorated, and the
fixture patches triton's autotuner and globals of fla's modules, none of which may leak into this pytest process
(here ``backend: auto`` must keep choosing our kernels for CPU tensors, and a GPU machine's tests need compiled
kernels). Each comparison is also made with fla's op called wrongly on purpose (two arguments swapped, the
carried memory dropped, one input's gradient scaled by 0.9), patched inside the child and restored after, and the
same check must then fail. bf16 stays a GPU check (numpy has no bf16: under the interpreter it gives garbage).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from omnirl_core.model import ModelConfig, OmniRL
from omnirl_core.model.layers import common
from omnirl_core.model.ops import dplr_step

ROOT = Path(__file__).resolve().parents[1]
HELPER = ROOT / "tests" / "fla_interpreter.py"
BACKBONES = ("rwkv7", "gated_deltanet", "gsa", "mamba2")
HEADS = (16, 64)  # the quick model's head size and the paper's
BREAKS = ("swap", "no_state", "grad")

# fp32 kernels that sum the same terms in another order (chunked matmuls, fla's intra-chunk sub-blocks): measured
# up to 5e-7 of the largest value in outputs and states, 1.6e-5 in a parameter gradient that sums over every
# position (Mamba2's A_log). 1e-4 leaves a margin of 6 over that; each broken call below misses it by over 10x
# (dropping Mamba2's carried memory by the least: its fast-decaying state only matters for a few steps).
REL_TOL = 1e-4

_no_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                reason="triton is not installed (the interpret extra: pip install -e .[interpret])")


def needs_triton(test):
    """The interpreter's comparisons: slow (the module's two child processes take a few minutes)."""
    return _no_triton(pytest.mark.slow(pytest.mark.timeout(1200)(test)))


def _cases() -> list[list[str]]:
    """Every case, in two groups of about equal interpreter time (RWKV-7's and GSA's kernels are the slow ones)."""
    layer = [f"layer:{b}:{h}" for b in BACKBONES for h in HEADS]
    broken = [f"break:{b}:16:{how}" for b in BACKBONES for how in BREAKS]
    train = ["train:rwkv7", "train:rwkv7:swap"]
    first = [c for c in layer if c.split(":")[1] in ("rwkv7", "mamba2")] + broken[:6] + train[1:]
    return [first, [c for c in layer + broken + train if c not in first]]


@pytest.fixture(scope="module")
def interpreted(request) -> dict:
    """{case: result} from the two child processes (also kept in pytest's cache, key fla_interpreter/results)."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def run(cases):
        return subprocess.run([sys.executable, str(HELPER), *cases], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=1100)

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(run, _cases()))
    results = {}
    for proc in done:
        assert proc.returncode == 0, f"{HELPER.name} failed:\n{proc.stderr[-4000:]}"
        results.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    request.config.cache.set("fla_interpreter/results", results)
    return results


def assert_agree(rows: dict, only=None) -> None:
    """Every compared quantity (or those in ``only``) within REL_TOL of the PyTorch path's largest value."""
    bad = {k: r for k, r in rows.items() if (only is None or k in only) and not r["rel"] <= REL_TOL}
    assert not bad, f"fla differs from torch beyond {REL_TOL:g}: {bad}"


@needs_triton
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_fla_kernels_match_the_pytorch_path(interpreted, backbone, head):
    """Forward over a first chunk, the memory it carries, a second chunk from it, one-token steps after it (as
    online acting calls them), the memory after those, gradients of the inputs and of every parameter."""
    rows = interpreted[f"layer:{backbone}:{head}"]["rows"]
    expected = {"chunk 1", "carried state", "chunk 2", "steps", "state after steps", "d input", "d parameters"}
    assert expected <= set(rows)
    assert rows["d parameters"]["count"] >= 8  # every parameter of the block, not a few
    assert_agree(rows)


@needs_triton
@pytest.mark.parametrize("how", BREAKS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_a_wrong_call_into_fla_fails_the_comparison(interpreted, backbone, how):
    rows = interpreted[f"break:{backbone}:16:{how}"]["rows"]
    outputs = ("chunk 1", "carried state", "chunk 2", "state after steps")
    if how == "swap":  # two tensor arguments exchanged: the first chunk is already wrong
        with pytest.raises(AssertionError):
            assert_agree(rows, ["chunk 1"])
    elif how == "no_state":  # the carried memory dropped: the first chunk right, the second wrong
        assert_agree(rows, ["chunk 1", "carried state"])
        with pytest.raises(AssertionError):
            assert_agree(rows, ["chunk 2"])
    else:  # a wrong backward only: the forward comparison passes, the gradients' fails
        assert_agree(rows, outputs)
        with pytest.raises(AssertionError):
            assert_agree(rows, ["d input", "d parameters"])
    assert max(r["rel"] for r in rows.values()) > 10 * REL_TOL


# AdamW's first iterations move every weight by up to about lr whatever the gradient's size (its update divides by
# the gradient's own running scale), so weights after training can only be compared on that scale: the two runs
# must agree to 1% of one iteration's step (lr); a broken kernel moves weights by a sizeable part of it.
WEIGHT_TOL_OF_LR = 1e-2


@needs_triton
def test_paper_layout_training_with_fla_kernels_equals_pytorch_kernels(interpreted):
    res = interpreted["train:rwkv7"]
    w = res["weights"]
    assert w["moved"] > w["lr"] / 2  # training did move the weights
    assert w["abs"] <= WEIGHT_TOL_OF_LR * w["lr"], w
    assert res["kernels"]["fla"]["RWKV-7"] == ["fla.ops.rwkv7.chunk_rwkv7 (backend: fla, Triton interpreter "
                                               "(TRITON_INTERPRET=1))"]
    assert res["kernels"]["torch"]["RWKV-7"] == ["the PyTorch kernels of omnirl_core.model.ops (backend: torch)"
                                                 + rwkv7_step_note(16)]


@needs_triton
def test_paper_layout_training_with_a_wrong_fla_call_differs(interpreted):
    w = interpreted["train:rwkv7:swap"]["weights"]
    assert w["abs"] > 10 * WEIGHT_TOL_OF_LR * w["lr"], w


# ---------------------------------------------------------------------------------------- without the interpreter
def _tiny(backbone: str, backend: str) -> ModelConfig:
    return replace(ModelConfig(backbone=backbone, ns_max=4, hidden_size=32, num_layers=1, intermediate_size=32,
                               head_dim=16, gdn_num_heads=2), backend=backend)


def _batch(cfg: ModelConfig, T: int = 5):
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, cfg.ns_max, (1, T), generator=g), torch.randint(0, 8, (1, T), generator=g),
            torch.randint(0, cfg.na, (1, T), generator=g), torch.randn(1, T, generator=g))


@pytest.fixture
def fresh_kernel_choices(monkeypatch):
    monkeypatch.setattr(common, "_CHOICES", {})
    monkeypatch.setattr(common, "_REPORTED", set())
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_backend_fla_on_a_cpu_tensor_is_a_one_line_error_naming_the_layer(backbone, monkeypatch,
                                                                          fresh_kernel_choices):
    monkeypatch.setattr(common, "_load_fla_op", lambda module, name: (lambda **kw: None, ""))  # fla importable
    cfg = _tiny(backbone, "fla")
    layer = {"rwkv7": "RWKV-7", "gated_deltanet": "Gated DeltaNet", "gsa": "GSA", "mamba2": "Mamba2"}[backbone]
    with pytest.raises(RuntimeError, match=f"^{layer}: backend 'fla' runs fla's Triton kernels .* on cpu") as err:
        OmniRL(cfg)(*_batch(cfg))
    assert "\n" not in str(err.value)


def test_backend_fla_without_an_importable_op_gives_its_first_line(monkeypatch, fresh_kernel_choices):
    monkeypatch.setitem(sys.modules, "fla.ops.rwkv7", None)
    common._load_fla_op.cache_clear()
    monkeypatch.setattr(common, "_load_fla_op", common._load_fla_op.__wrapped__)
    with pytest.raises(RuntimeError, match=r"^RWKV-7: backend 'fla' needs flash-linear-attention") as err:
        OmniRL(_tiny("rwkv7", "fla"))(*_batch(_tiny("rwkv7", "fla")))
    assert "\n" not in str(err.value)


def test_auto_on_cpu_decides_without_importing_fla(monkeypatch, fresh_kernel_choices, capsys):
    def no_import(module, name):
        raise AssertionError(f"fla.ops.{module} imported for a CPU tensor")

    monkeypatch.setattr(common, "_load_fla_op", no_import)
    with common.kernel_record() as used:
        for backbone in BACKBONES:
            cfg = _tiny(backbone, "auto")
            OmniRL(cfg)(*_batch(cfg))
    with common.kernel_record() as none:
        pass
    assert set(used) == {"RWKV-7", "Gated DeltaNet", "GSA", "Mamba2"}
    ours = ("the PyTorch kernels of omnirl_core.model.ops (backend: auto, tensor on cpu (fla's kernels are Triton, "
            "GPU only))")
    assert all(v == [ours + (rwkv7_step_note(16) if layer == "RWKV-7" else "")] for layer, v in used.items()), used
    assert capsys.readouterr().err.count("[omnirl kernels]") == 4 and none == {}


def rwkv7_step_note(head_dim: int) -> str:
    """What the RWKV-7 layer adds to its report on CPU at small heads: which of our kernels it runs."""
    if not dplr_step.HAVE_NUMBA:
        return (f"; chunked form: numba cannot be imported ({dplr_step.NUMBA_ERROR}), and the faster per-step kernel "
                f"for head dim {head_dim} needs it")
    return (f"; per-step numba kernel dplr_step.dplr_recurrent (head dim {head_dim} <= "
            f"{dplr_step.STEP_MAX_HEAD_DIM} on cpu)")


def test_the_paper_profile_asks_for_fla_kernels():
    p03 = yaml.safe_load((ROOT / "params/paper/03_training.yaml").read_text())
    p05 = yaml.safe_load((ROOT / "params/paper/05_ablations.yaml").read_text())
    assert p03["model"]["backend"] == "fla" and p05["training"]["model"]["backend"] == "fla"


def test_training_records_which_kernels_each_layer_ran(tmp_path, fresh_kernel_choices):
    from omnirl_core.training import TrainConfig, train
    from omnirl_core.workbook import load_config

    over = ["device=cpu", "data.path=null", "model.hidden_size=16", "model.num_layers=1", "model.head_dim=8",
            "model.intermediate_size=16", "model.ns_max=16", "model.backbone=gsa", "model.backend=torch",
            "data.batch_size=1", "data.seq_len=8", "chunk_len=8", "bf16=false", "steps=1", "eval.every=0",
            "launch.nproc_per_node=1", "torch_threads=1"]
    cfg = load_config(TrainConfig, ROOT / "params/paper/03_training.yaml", overrides=over)
    train(cfg, tmp_path / "run", hooks=[], progress=False)
    assert json.loads((tmp_path / "run" / "kernels.json").read_text()) == {
        "GSA": ["the PyTorch kernels of omnirl_core.model.ops (backend: torch)"]}
