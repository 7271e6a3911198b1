"""The GPU check: one script, one table, for a CUDA machine (a few minutes on one H100/H200).

1. **Kernels.** Each backbone's fla path (``backend: fla``) against our PyTorch path (``backend: torch``), the same
   weights, at the paper's width (hidden 512, 8 heads) with two blocks: forward outputs and the gradients of every
   parameter, in fp32 and under bf16 autocast, with the recurrent state carried from one 2K-step chunk into the
   next (upstream fla issues 351 and 494 were wrong results exactly there). Reports max |difference| relative to
   max |reference| per quantity and a pass mark (fp32 <= 1e-3, bf16 <= 5e-2).
2. **Throughput.** Training iterations of the paper configuration (``params/paper/03_training.yaml``: RWKV-7 18 x
   512, 5 sequences of 12,288 steps, chunks of 2,048, bf16) on one GPU: environment steps per second (the paper:
   7.5K per A800) and peak memory.
3. **Online step.** One step of the paper's model for a batch of 256 tasks with the memory carried, as the
   evaluation runs a suite: the rate ``bench/paper_cost.py --step-ms`` assumes.
4. **Smoke.** ``training.train`` with the paper profile on one GPU for a few iterations (stand-in data): finite
   losses, a checkpoint written.

    .venv/bin/python bench/gpu_check.py                 # on the GPU machine
    .venv/bin/python bench/gpu_check.py --cpu --tiny    # the same code on CPU at toy sizes

``--cpu`` tests the script before GPU time is spent: the fla side then runs fla's real Triton kernels under
Triton's interpreter (``TRITON_INTERPRET=1``, the ``interpret`` extra; ``tests/fla_interpreter.py`` clears what
stands between it and fla's kernels), so the kernel marks compare fla with torch and can fail; fp32 only (the
interpreter computes bf16 wrongly, numpy having none), and the throughput and smoke rows run the PyTorch kernels
(the interpreter is far too slow for them): their speeds are not GPU numbers.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omnirl_core.model import ModelConfig, OmniRL, detach_state  # noqa: E402
from omnirl_core.training import TrainConfig, accumulate_gradients, make_data, train  # noqa: E402
from omnirl_core.workbook import load_config  # noqa: E402

BACKBONES = ("rwkv7", "gated_deltanet", "gsa", "mamba2")
TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12))


def kernel_rows(device: str, tiny: bool) -> list[dict]:
    """fla vs torch for every backbone and precision, two chunks with the state carried."""
    rows = []
    # on CPU the interpreter runs every kernel program in numpy: 10 steps (40 tokens) per chunk, one sequence
    width, T, B = (32, 64, 2) if tiny and device == "cuda" else (32, 10, 1) if tiny else (512, 2048, 2)
    for backbone in BACKBONES:
        base = ModelConfig.paper(backbone)
        cfg = replace(base, num_layers=2, ns_max=128, backend="torch",
                      **({"hidden_size": width, "intermediate_size": 2 * width, "head_dim": 16, "gdn_num_heads": 2,
                          "mamba_state_size": 16} if tiny else {}))
        torch.manual_seed(0)
        ref = OmniRL(cfg).to(device)
        with torch.no_grad():  # RWKV-7 starts its output projections at zero, which would hide the kernels
            for p in ref.parameters():
                p.add_(0.02 * torch.randn_like(p))
        fast = OmniRL(replace(cfg, backend="fla")).to(device)
        fast.load_state_dict(ref.state_dict())
        g = torch.Generator().manual_seed(1)
        obs = torch.randint(0, cfg.ns_max, (B, 2 * T), generator=g).to(device)
        tag = torch.randint(0, 8, (B, 2 * T), generator=g).to(device)
        act = torch.randint(0, cfg.na, (B, 2 * T), generator=g).to(device)
        rew = torch.randn(B, 2 * T, generator=g).to(device)
        for precision in ("fp32", "bf16"):
            if precision == "bf16" and device == "cpu":
                rows.append({"check": f"{backbone} fla vs torch, bf16", "pass": "-",
                             "result": "GPU only (Triton's interpreter has no bf16: numpy lacks it)"})
                continue
            outs, grads = [], []
            for model in (ref, fast):
                model.zero_grad(set_to_none=True)
                with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16" and device == "cuda"):
                    y1, _, st = model(obs[:, :T], tag[:, :T], act[:, :T], rew[:, :T])
                    y2, _, st2 = model(obs[:, T:], tag[:, T:], act[:, T:], rew[:, T:], st)
                (y1.float().square().mean() + y2.float().square().mean()).backward()
                outs.append((y1.detach(), y2.detach(), detach_state(st2)))
                grads.append({k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None})
            (a1, a2, _), (b1, b2, _) = outs
            grad_err = max(_rel(grads[1][k], grads[0][k]) for k in grads[0])
            errs = {"chunk 1": _rel(b1, a1), "chunk 2 (state carried)": _rel(b2, a2), "gradients": grad_err}
            worst = max(errs.values())
            rows.append({"check": f"{backbone} fla vs torch, {precision}",
                         "result": ", ".join(f"{k} {v:.1e}" for k, v in errs.items()),
                         "pass": "yes" if worst <= TOLERANCE[precision] else "NO"})
    return rows


def throughput_row(device: str, tiny: bool, iterations: int) -> dict:
    over = ["device=" + device, "bf16=" + str(device == "cuda").lower(), "data.path=null"]
    if device == "cpu":
        over.append("model.backend=torch")  # the profile's fla kernels need a GPU (or the far slower interpreter)
    if tiny:
        over += ["model.hidden_size=32", "model.num_layers=2", "model.intermediate_size=64", "model.head_dim=16",
                 "data.batch_size=2", "data.seq_len=256", "chunk_len=128"]
    cfg = load_config(TrainConfig, ROOT / "params/paper/03_training.yaml", overrides=over)
    model = OmniRL(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr)
    data = make_data(cfg)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(iterations + 1):  # the first iteration warms up (kernel compilation, allocator)
        batch = {k: v.to(device) for k, v in data.next_batch().items()}
        t0 = time.perf_counter()
        accumulate_gradients(model, batch, batch["obs"], cfg)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    steps = cfg.data.batch_size * (cfg.data.seq_len or 0)
    per_s = steps / (sum(times) / len(times))
    mem = f", peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device == "cuda" else ""
    return {"check": f"training throughput, {cfg.model.backbone} {cfg.model.num_layers} x {cfg.model.hidden_size}, "
                     f"batch {cfg.data.batch_size} x {cfg.data.seq_len}, chunks {cfg.chunk_len}",
            "result": f"{per_s:,.0f} env steps/s per GPU (paper: 7,500 on an A800){mem}", "pass": "-"}


def online_step_row(device: str, tiny: bool, steps: int = 50, batch: int = 256) -> dict:
    """Milliseconds of one online step (``OmniRL.step``: act, then observe, the memory carried) of the paper's
    model for a whole batch of tasks, as the evaluation runs a suite: ``bench/paper_cost.py --step-ms``."""
    over = ["device=" + device, "data.path=null"] + (["model.backend=torch"] if device == "cpu" else [])
    if tiny:
        over += ["model.hidden_size=32", "model.num_layers=2", "model.intermediate_size=64", "model.head_dim=16"]
        batch, steps = 4, 5
    cfg = load_config(TrainConfig, ROOT / "params/paper/03_training.yaml", overrides=over)
    model = OmniRL(cfg.model).to(device).eval()
    zeros = torch.zeros(batch, dtype=torch.long, device=device)
    state, times = None, []
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        for i in range(steps + 1):  # the first step warms up
            t0 = time.perf_counter()
            _, _, state = model.step(zeros, zeros + 7, zeros, torch.zeros(batch, device=device), state)
            if device == "cuda":
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t0)
    ms = 1000 * sum(times) / len(times)
    return {"check": f"online step, {cfg.model.backbone} {cfg.model.num_layers} x {cfg.model.hidden_size}, batch "
                     f"{batch} tasks", "result": f"{ms:.2f} ms per step (bench/paper_cost.py --step-ms)", "pass": "-"}


def smoke_row(device: str, tiny: bool) -> dict:
    over = ["device=" + device, "steps=3", "data.path=null", "checkpoint_every=3", "eval.every=0",
            "launch.nproc_per_node=1", "bf16=" + str(device == "cuda").lower()]
    if device == "cpu":
        over.append("model.backend=torch")
    if tiny:
        over += ["model.hidden_size=32", "model.num_layers=2", "model.intermediate_size=64", "model.head_dim=16",
                 "data.batch_size=2", "data.seq_len=256", "chunk_len=128"]
    cfg = load_config(TrainConfig, ROOT / "params/paper/03_training.yaml", overrides=over)
    with tempfile.TemporaryDirectory() as tmp:
        res = train(cfg, tmp, progress=False)
        ok = res.step == 3 and res.bad_steps == 0 and (Path(tmp) / "checkpoint.pt").is_file()
    return {"check": "paper profile, 3 iterations on one device", "result": f"last loss {res.last_loss:.4f}",
            "pass": "yes" if ok else "NO"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="run on CPU (tests the script; no GPU numbers)")
    ap.add_argument("--tiny", action="store_true", help="toy sizes")
    ap.add_argument("--iterations", type=int, default=3, help="timed training iterations")
    args = ap.parse_args(argv)
    device = "cpu" if args.cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device (use --cpu to test the script)", file=sys.stderr)
        return 2
    if device == "cpu":
        try:
            sys.path.insert(0, str(ROOT / "tests"))
            from fla_interpreter import enable  # before anything imports fla.ops
            enable()
        except ImportError as err:
            print(f"error: --cpu runs fla's kernels under Triton's interpreter, which needs triton "
                  f"(pip install -e .[interpret]): {err}", file=sys.stderr)
            return 2
    rows = kernel_rows(device, args.tiny) + [throughput_row(device, args.tiny, args.iterations),
                                             online_step_row(device, args.tiny), smoke_row(device, args.tiny)]
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    print(f"GPU check on {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| check | result | pass |\n|---|---|---|")
    for r in rows:
        print(f"| {r['check']} | {r['result']} | {r['pass']} |")
    return 0 if all(r["pass"] != "NO" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
