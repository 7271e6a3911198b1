"""CPU speed of the model's recurrences: our chunked pure-torch kernels against fla-core's torch references.

One run, one table, ratios side by side (this machine is noisy, so the two sides of a row are timed
alternately and the medians compared):

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

    .venv/bin/python bench/bench_model.py [--markdown] [--repeats 5]
    .venv/bin/python bench/bench_model.py --smoke   # seconds: tiny shapes, one training iteration
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from omnirl_core.model.ops.dplr import rwkv7_chunked, rwkv7_naive
from omnirl_core.model.ops.gated_delta import gated_delta_chunked, gated_delta_naive

TARGETS = {"rwkv7": 2.0, "gdn": 1.0}
TRAIN_CONFIG = "params/quick/03_training.yaml"
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
    parser.add_argument("--smoke", action="store_true", help="seconds: tiny shapes, one training iteration (checks "
                        "that the script runs; the numbers mean little)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    sizes = {"B": (4, 1), "T": (2048, 128), "threads": (2, 1), "repeats": (5, 1), "naive_T": (256, 16),
             "train_steps": (40, 1), "train_sequences": (256, 8)}
    for name, (full, smoke) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.smoke else full)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # long decays produce subnormal floats that slow CPU backward passes
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

    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads; load average {load}; "
        f"B={B} T={T} heads={H} head_dim={K} fp32, forward+backward, medians of {args.repeats}"
    )
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
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)]
        for line in [head, *lines]:
            print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)))
    print(
        f"training, {TRAIN_CONFIG} on CPU: {train_rate:,.0f} environment steps/s "
        f"(batch x sequence length per iteration / seconds, {args.train_steps} iterations; data: "
        f"{args.train_sequences} sequences of its dataset as {DATA_CONFIG} defines it, synthesised for this run)"
    )
    if dplr_ref is None or gdn_ref is None:
        print("fla-core is not installed: reference columns are empty (pip install fla-core==0.6.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
