"""CPU speed of the model's recurrences: our chunked pure-torch kernels against fla-core's torch references, and
whole training iterations with the RWKV-7 recurrence chunked against the kernel the layer selects by shape.

Ratios side by side (this machine is noisy, so the two sides of a row are timed alternately and the medians
compared):

- RWKV-7 (DPLR delta rule): ``omnirl_core.model.ops.dplr.rwkv7_chunked`` vs fla-core's ``dplr_chunkwise``
  (chunk 16), target >= 2x;
- Gated DeltaNet: ``omnirl_core.model.ops.gated_delta.gated_delta_chunked`` vs fla-core's
  ``naive_chunk_gated_delta_rule`` (chunk 64), target >= 1x;
- for scale, the per-step naive references (on a shorter sequence, reported per token);
- training throughput of the quick training config (``params/quick/03_training.yaml``) on this CPU, in
  environment steps per second (``--train-steps`` iterations after one warm-up iteration), on a small copy of
  the dataset it trains on (``--train-sequences`` sequences of ``dpd_bandit`` as ``params/quick/02_synthesis.yaml``
  defines it, synthesised into a temporary folder first, so a fresh clone needs no notebook output).

Shape: one layer's recurrence with hidden 128 = 2 heads of 64, B = 4, T = 2048, fp32, forward + backward
(gradients of every input), ``--threads`` torch threads (2). fla-core is loaded by file path (its package
``__init__`` imports triton, which a CPU machine lacks); install it with ``pip install fla-core==0.6.0``.

Second table, training iterations at one thread (``--iteration-threads``): forward and backward over every
``chunk_len`` chunk of a batch with the memory carried (training's ``accumulate_gradients``), gradient clipping and
an AdamW step, on stand-in sequences of the config's batch shape. Old path: the RWKV-7 layers run the chunked
form (``ops.dplr.dplr_chunked``); new: the kernel the layer selects (on CPU at head dims up to
``ops.dplr_step.STEP_MAX_HEAD_DIM``, the per-step numba kernel). Rows: the quick config
(``params/quick/03_training.yaml``: its model and the batch of each of its processes, as trained), and the paper
config's shapes (``params/paper/03_training.yaml``: 512 wide, heads of 64, batch 5, chunks of 2,048 steps in the
four-token layout) cut down to ``--paper-layers`` of its 18 blocks and ``--paper-steps`` steps per sequence, which
one CPU thread can time (its recurrence at the paper's own batch and chunk length is the row after it).

    .venv/bin/python bench/bench_model.py [--markdown] [--repeats 5]
    .venv/bin/python bench/bench_model.py --iterations-only   # the second table alone
    .venv/bin/python bench/bench_model.py --iterations-only --compile   # and torch.compile's row
    .venv/bin/python bench/bench_model.py --smoke   # seconds: tiny shapes, one training iteration
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.util
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from omnirl_core.model.ops import dplr_step
from omnirl_core.model.ops.dplr import rwkv7_chunked, rwkv7_naive
from omnirl_core.model.ops.gated_delta import gated_delta_chunked, gated_delta_naive

TARGETS = {"rwkv7": 2.0, "gdn": 1.0}
TRAIN_CONFIG = "params/quick/03_training.yaml"
PAPER_CONFIG = "params/paper/03_training.yaml"
DATA_CONFIG = "params/quick/02_synthesis.yaml"  # defines the dataset TRAIN_CONFIG trains on


def load_fla(rel: str):
    """One of fla-core's torch reference files, loaded by path; None when fla-core is not installed."""
    spec = importlib.util.find_spec("fla")
    if spec is None or spec.submodule_search_locations is None:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.exists():
        return None
    mod_spec = importlib.util.spec_from_file_location(f"_bench_fla_{path.stem}", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def rwkv7_inputs(B: int, T: int, H: int, K: int, seed: int = 0):
    """Inputs shaped like an RWKV-7 layer's: log decay in [-exp(-0.5), 0), normalised kk, gate a in (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    r, k, v = (torch.randn(B, T, H, K, generator=g) for _ in range(3))
    w = -torch.exp(torch.tensor(-0.5)) * torch.sigmoid(torch.randn(B, T, H, K, generator=g))
    kk = F.normalize(torch.randn(B, T, H, K, generator=g), dim=-1)
    a = torch.sigmoid(torch.randn(B, T, H, K, generator=g))
    return [x.requires_grad_() for x in (r, w, k, v, -kk, kk * a)]


def gdn_inputs(B: int, T: int, H: int, K: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(B, T, H, K, generator=g), dim=-1)
    k = F.normalize(torch.randn(B, T, H, K, generator=g), dim=-1)
    v = torch.randn(B, T, H, K, generator=g)
    beta = torch.sigmoid(torch.randn(B, T, H, generator=g))
    gate = F.logsigmoid(torch.randn(B, T, H, generator=g) + 3.0)
    return [x.requires_grad_() for x in (q, k, v, beta, gate)]


def fwd_bwd_seconds(fn, inputs) -> float:
    for x in inputs:
        x.grad = None
    t0 = time.perf_counter()
    out, state = fn(*inputs)
    loss = out.float().square().mean() + (state.float().square().mean() if state is not None else 0.0)
    loss.backward()
    return time.perf_counter() - t0


def compare(name: str, ours, ref, inputs, tokens: int, repeats: int) -> dict:
    fwd_bwd_seconds(ours, inputs)  # warm-up both sides
    if ref is not None:
        fwd_bwd_seconds(ref, inputs)
    ours_s, ref_s = [], []
    for i in range(repeats):
        order = (("ours", ours), ("ref", ref)) if i % 2 == 0 else (("ref", ref), ("ours", ours))
        for side, fn in order:
            if fn is None:
                continue
            (ours_s if side == "ours" else ref_s).append(fwd_bwd_seconds(fn, inputs))
    row = {"name": name, "ours": tokens / statistics.median(ours_s)}
    row["ref"] = tokens / statistics.median(ref_s) if ref_s else None
    return row


def quick_training_rate(steps: int, n_sequences: int, engine: str = "numba") -> float:
    """Environment steps per second of the quick training config (timed after a 1-iteration warm-up).

    Its dataset (notebook 02's output) is replaced by ``n_sequences`` sequences of the same dataset config,
    synthesised into a temporary folder: the time of an iteration depends on the data's shape, not its amount.
    """
    import tempfile

    from omnirl_core.synthesis import DatasetConfig, SynthesisConfig, synthesize
    from omnirl_core.training import TrainConfig, train
    from omnirl_core.workbook import load_config, repo_path

    cfg = load_config(TrainConfig, repo_path(TRAIN_CONFIG))
    name = Path(cfg.data.path).name
    full = load_config(SynthesisConfig, repo_path(DATA_CONFIG)).datasets[name]
    small = dataclasses.asdict(full) | {
        "n_sequences": n_sequences,
        "sequences_per_shard": n_sequences,
        "batch_size": min(n_sequences, full.batch_size),
        "engine": engine,
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data" / name
        synthesize(load_config(DatasetConfig, small), data, progress=False)

        def config(n: int) -> TrainConfig:
            return load_config(TrainConfig, repo_path(TRAIN_CONFIG), overrides={"steps": n, "data.path": str(data)})

        train(config(1), Path(tmp) / "warm", progress=False)
        timed_cfg = config(steps)
        t0 = time.perf_counter()
        train(timed_cfg, Path(tmp) / "run", progress=False)
        seconds = time.perf_counter() - t0
    return steps * cfg.data.batch_size * cfg.data.seq_len / seconds


@contextlib.contextmanager
def chunked_rwkv7():
    """The RWKV-7 layers run the chunked form inside the block (the path before the per-step kernel)."""
    kept = dplr_step.STEP_MAX_HEAD_DIM
    dplr_step.STEP_MAX_HEAD_DIM = 0
    try:
        yield
    finally:
        dplr_step.STEP_MAX_HEAD_DIM = kept


def iteration_config(path: str, overrides: list[str]):
    from omnirl_core.training import TrainConfig
    from omnirl_core.workbook import load_config, repo_path

    base = ["data.path=null", "device=cpu", "bf16=false", "model.backend=torch", "eval.every=0"]
    return load_config(TrainConfig, repo_path(path), overrides=base + overrides)


class Iteration:
    """One training iteration of ``cfg`` as training runs it (chunks with the memory carried, clipping, AdamW), on
    a fixed stand-in batch of the config's shape; ``chunked`` forces the old RWKV-7 path. Returns (seconds, loss)."""

    def __init__(self, cfg, chunked: bool):
        from omnirl_core.model import OmniRL
        from omnirl_core.training.data import StandInData

        torch.manual_seed(cfg.seed)
        self.cfg, self.chunked = cfg, chunked
        self.model = OmniRL(cfg.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.batch = StandInData(cfg.data, cfg.seed).next_batch()

    def __call__(self) -> tuple[float, float]:
        from omnirl_core.training.losses import accumulate_gradients

        with chunked_rwkv7() if self.chunked else contextlib.nullcontext():
            t0 = time.perf_counter()
            self.opt.zero_grad(set_to_none=True)
            terms = accumulate_gradients(self.model, self.batch, self.batch["obs"], self.cfg)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
            self.opt.step()
            return time.perf_counter() - t0, terms["loss"]


def alternate(sides: dict, repeats: int) -> dict[str, list]:
    """Each side's results: one warm-up call each (first in its list), then ``repeats`` calls of the sides in turn
    (the order flips every repeat)."""
    out = {name: [fn()] for name, fn in sides.items()}
    names = list(sides)
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            out[name].append(sides[name]())
    return out


def iteration_rows(args) -> tuple[list[dict], list[str]]:
    """Rows of the second table (rate per second of each side) and notes (losses of both sides)."""
    rows, notes = [], []
    quick_over = ["data.ns=1"]  # its dataset is bandits: one state (model.ns_max 1)
    quick_over += [f"data.batch_size={args.quick_batch}"] if args.quick_batch else []
    quick_over += ["data.batch_size=1", "data.seq_len=32", "chunk_len=16"] if args.smoke else []
    paper_over = [f"model.num_layers={args.paper_layers}", f"data.seq_len={args.paper_steps}",
                  f"chunk_len={min(args.paper_steps, 2048)}"] + (["data.batch_size=1"] if args.smoke else [])
    if args.compile:  # the quick config's model under torch.compile, both sides on the selected kernel
        # torch 2.13's cache of compiled autograd graphs, on a second process, replays this model's aliased outputs
        # with garbage shapes ("shape '[93928098064311, ...]' is invalid"): compile without it
        import torch._functorch.config as functorch_config

        functorch_config.enable_autograd_cache = False
        cfg = iteration_config(TRAIN_CONFIG, quick_over)
        plain, compiled = Iteration(cfg, chunked=False), Iteration(cfg, chunked=False)
        compiled.model = torch.compile(compiled.model)
        t0 = time.perf_counter()
        compiled()  # compiles (the graphs of the first chunk, without memory, and of the later ones)
        compiled()
        compile_s = time.perf_counter() - t0
        res = alternate({"chunked": plain, "auto": compiled}, args.repeats)
        rate = {k: 1.0 / statistics.median(t for t, _ in v[1:]) for k, v in res.items()}
        rows.append({"name": "quick config's training iteration under torch.compile(model) (new) vs eager (old), both "
                             "on the selected kernel", "unit": "iterations/s", **rate, "kernel": "compiled"})
        saved = 1 / rate["chunked"] - 1 / rate["auto"]
        notes.append(f"torch.compile: its first two iterations took {compile_s:.1f} s; at {saved * 1e3:.0f} ms saved "
                     f"per iteration that pays for itself after "
                     f"{compile_s / saved if saved > 0 else float('inf'):,.0f} iterations")
    for label, path, over in (("quick config", TRAIN_CONFIG, quick_over), ("paper config, cut", PAPER_CONFIG,
                                                                              paper_over)):
        cfg = iteration_config(path, over)
        m, d = cfg.model, cfg.data
        hd = m.resolved_head_dim
        name = (f"{label}: training iteration, RWKV-7 {m.num_layers} x {m.hidden_size} (heads of {hd}), "
                f"batch {d.batch_size} x {d.seq_len:,} steps ({m.layout} layout), chunk_len {cfg.chunk_len:,}")
        res = alternate({"chunked": Iteration(cfg, chunked=True), "auto": Iteration(cfg, chunked=False)},
                        args.repeats)
        rate = {k: 1.0 / statistics.median(t for t, _ in v[1:]) for k, v in res.items()}
        rows.append({"name": name, "unit": "iterations/s", **rate, "kernel": _kernel_name(hd)})
        for i, when in ((0, "first iteration"), (-1, f"iteration {args.repeats + 1}")):
            a, b = res["chunked"][i][1], res["auto"][i][1]
            notes.append(f"{label}: loss of the {when} (same initial weights and batch): chunked {a:.7g}, auto "
                         f"{b:.7g}, relative difference {abs(b / a - 1):.1e}")
    # the recurrence alone, forward + backward, at the shapes of the two configs' layers
    pB, pT = (1, 64) if args.smoke else (5, args.paper_recurrence_T)
    quick = iteration_config(TRAIN_CONFIG, quick_over)  # one process's batch, chunks of chunk_len steps
    qB, qT = (1, 32) if args.smoke else (quick.data.batch_size, quick.chunk_len)
    for B, T, H, K, label in ((qB, qT, 4, 16, "quick"), (pB, pT, 8, 64, "paper")):
        x = rwkv7_inputs(B, T, H, K)
        chunk = 32 if label == "quick" else 64  # each config's chunk_size (the paper's: the layer's default)
        sides = {"chunked": functools.partial(fwd_bwd_seconds, functools.partial(rwkv7_chunked, chunk_size=chunk), x)}
        if dplr_step.HAVE_NUMBA and K <= dplr_step.STEP_MAX_HEAD_DIM:
            sides["auto"] = functools.partial(fwd_bwd_seconds, dplr_step.rwkv7_recurrent, x)
        else:
            sides["auto"] = sides["chunked"]
        res = alternate(sides, args.repeats)
        rows.append({"name": f"RWKV-7 recurrence alone, {label} config's layer: B {B}, T {T:,} tokens, {H} heads of "
                             f"{K}, forward + backward", "unit": "tokens/s",
                     **{k: B * T / statistics.median(v[1:]) for k, v in res.items()}, "kernel": _kernel_name(K)})
    return rows, notes


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _kernel_name(head_dim: int) -> str:
    if head_dim > dplr_step.STEP_MAX_HEAD_DIM:
        return "chunked"
    return "per-step (numba)" if dplr_step.HAVE_NUMBA else "chunked (numba missing)"


def print_table(head: list[str], lines: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)]
        for line in [head, *lines]:
            print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--B", type=int, default=None, help="batch [4; smoke 1]")
    parser.add_argument("--T", type=int, default=None, help="sequence length [2048; smoke 128]")
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads [2; smoke 1]")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per side [5; smoke 1]")
    parser.add_argument("--naive-T", type=int, default=None, help="sequence length for the per-step references [256; "
                        "smoke 16]")
    parser.add_argument("--train-steps", type=int, default=None, help="iterations of the quick training config [40; "
                        "smoke 1]")
    parser.add_argument("--train-sequences", type=int, default=None, help="sequences of the dataset synthesised for "
                        "the training row [256, one shard; smoke 8]")
    parser.add_argument("--iteration-threads", type=int, default=1, help="torch threads of the second table [1]")
    parser.add_argument("--paper-layers", type=int, default=None, help="blocks of the paper model timed [2; smoke 1]")
    parser.add_argument("--paper-steps", type=int, default=None, help="steps per sequence of the paper-shape "
                        "iteration [256; smoke 8]")
    parser.add_argument("--paper-recurrence-T", type=int, default=2048, help="tokens per sequence of the paper "
                        "layer's recurrence row (its rate per token does not depend on it) [2048]")
    parser.add_argument("--quick-batch", type=int, default=None, help="sequences per iteration of the quick config's "
                        "rows [its data.batch_size: one process's share]")
    parser.add_argument("--iterations-only", action="store_true", help="the second table alone")
    parser.add_argument("--compile", action="store_true", help="add a row: the quick config's iteration under "
                        "torch.compile (tens of seconds of compilation first)")
    parser.add_argument("--smoke", action="store_true", help="seconds: tiny shapes, one training iteration (checks "
                        "that the script runs; the numbers mean little)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    sizes = {"B": (4, 1), "T": (2048, 128), "threads": (2, 1), "repeats": (5, 1), "naive_T": (256, 16),
             "train_steps": (40, 1), "train_sequences": (256, 8), "paper_layers": (2, 1), "paper_steps": (256, 8)}
    for name, (full, smoke) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.smoke else full)
    torch.set_flush_denormal(True)  # long decays produce subnormal floats that slow CPU backward passes
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}; load average {load}")
    if not args.iterations_only:
        torch.set_num_threads(args.threads)
        kernel_section(args)
    torch.set_num_threads(args.iteration_threads)
    rows, notes = iteration_rows(args)
    print(f"training iterations and the recurrence alone: {args.iteration_threads} thread(s), fp32, medians of "
          f"{args.repeats}, the two sides timed alternately")
    print("old: the RWKV-7 layers on the chunked form; new: on the kernel the layer selects by shape (the "
          "torch.compile row: old uncompiled, new compiled, both on the selected kernel)")
    head = ["Measurement", "unit", "old", "new", "new runs", "speed-up"]
    print_table(head, [[r["name"], r["unit"], _rate(r["chunked"]), _rate(r["auto"]), r["kernel"],
                        f"{r['auto'] / r['chunked']:.2f}x"] for r in rows], args.markdown)
    for note in notes:
        print(note)
    return 0


def kernel_section(args) -> None:
    B, T, H, K = args.B, args.T, args.heads, args.head_dim
    tokens = B * T
    dplr_ref = load_fla("ops/generalized_delta_rule/dplr/naive.py")
    gdn_ref = load_fla("ops/gated_delta_rule/naive.py")

    rows = []
    x = rwkv7_inputs(B, T, H, K)
    fla_dplr = None
    if dplr_ref is not None:

        def fla_dplr(r, w, k, v, a, b):  # fla's layout is [B, H, T, D]; q is scaled by K^-0.5 inside
            args_ = [t.transpose(1, 2) for t in (r * K**0.5, k, v, a, b, w)]
            o, s = dplr_ref.dplr_chunkwise(*args_, initial_state=None, output_final_state=True, chunk_size=16)
            return o.transpose(1, 2), s

    for chunk in (64, 32):
        rows.append(
            compare(
                f"RWKV-7 chunked (chunk {chunk}) vs fla dplr_chunkwise (chunk 16)",
                lambda *t, c=chunk: rwkv7_chunked(*t, chunk_size=c),
                fla_dplr,
                x,
                tokens,
                args.repeats,
            )
            | {"target": TARGETS["rwkv7"]}
        )
    short = [t.detach()[:, : args.naive_T].clone().requires_grad_() for t in x]
    rows.append(compare("RWKV-7 per-step naive (ours)", rwkv7_naive, None, short, B * args.naive_T, 2))

    y = gdn_inputs(B, T, H, K)
    fla_gdn = None
    if gdn_ref is not None:

        def fla_gdn(q, k, v, beta, gate):
            return gdn_ref.naive_chunk_gated_delta_rule(
                q, k, v, g=gate, beta=beta, chunk_size=64, initial_state=None, output_final_state=True
            )

    rows.append(
        compare(
            "Gated DeltaNet chunked (chunk 64) vs fla naive_chunk_gated_delta_rule (chunk 64)",
            lambda q, k, v, beta, gate: gated_delta_chunked(q, k, v, beta, gate, chunk_size=64),
            fla_gdn,
            y,
            tokens,
            args.repeats,
        )
        | {"target": TARGETS["gdn"]}
    )
    short = [t.detach()[:, : args.naive_T].clone().requires_grad_() for t in y]
    rows.append(compare("Gated DeltaNet per-step naive (ours)", gated_delta_naive, None, short, B * args.naive_T, 2))

    # The numpy engine needs no compilation, which on a cold numba cache would take longer than a smoke run.
    train_rate = quick_training_rate(args.train_steps, args.train_sequences, "numpy" if args.smoke else "numba")

    print(f"{args.threads} threads; B={B} T={T} heads={H} head_dim={K} fp32, forward+backward, medians of "
          f"{args.repeats}")
    head = ["Measurement", "fla-core reference (tokens/s)", "ours (tokens/s)", "speed-up", "target", "result"]
    lines = []
    for r in rows:
        ratio = r["ours"] / r["ref"] if r["ref"] else None
        target = r.get("target")
        verdict = "-" if ratio is None or target is None else ("PASS" if ratio >= target else "MISS")
        lines.append(
            [
                r["name"],
                f"{r['ref']:,.0f}" if r["ref"] else "-",
                f"{r['ours']:,.0f}",
                f"{ratio:.2f}x" if ratio else "-",
                f">= {target:g}x" if target and r["ref"] else "-",
                verdict,
            ]
        )
    print_table(head, lines, args.markdown)
    print(
        f"training, {TRAIN_CONFIG} on CPU: {train_rate:,.0f} environment steps/s in one process (its batch x "
        f"sequence length per iteration / seconds, {args.train_steps} iterations; notebook 03 runs "
        f"launch.nproc_per_node such processes; data: {args.train_sequences} sequences of its dataset as "
        f"{DATA_CONFIG} defines it, synthesised for this run)"
    )
    if dplr_ref is None or gdn_ref is None:
        print("fla-core is not installed: reference columns are empty (pip install fla-core==0.6.0)")


if __name__ == "__main__":
    raise SystemExit(main())
