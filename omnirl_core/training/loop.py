"""Meta-training of OmniRL (paper Algorithm 3), readable top to bottom.

One training iteration, for a batch of B sequences of T steps::

    w_t  = ramp from 1e-3 to 1 over the first 512 steps (position weights)
    N    = sum over the batch (all processes) of w_t * m_t          (m_t = 1 where the label counts)
    memory = empty
    for each chunk [t0, t1) of the sequence (2K steps by default):
        logits, aux, memory' = model(chunk inputs, memory)
        loss_k = sum_{t in chunk} w_t m_t CE(logits_t, a*_t) / N   (+ optional world-model terms)
        loss_k.backward()                                           # gradients accumulate over chunks
        memory = stop_gradient(memory')                             # truncated BPTT at chunk boundaries
    clip the gradient norm to 1.0, one AdamW step, lr = warmup then 1/sqrt decay

Because every chunk's loss is divided by the *same* N, the accumulated gradient is the gradient of the
sequence-level weighted loss, with back-propagation through time cut at chunk boundaries; with one chunk
(chunk_len >= T) it is exactly full back-propagation. Under DistributedDataParallel (``torchrun``) N is summed
over all processes and each process's loss is multiplied by the world size, so the gradients DDP averages equal
those of one process holding the combined batch.

Robustness: checkpoints are written atomically and hold everything needed for an exact resume (model,
optimiser, schedule position, RNG states, data position); a non-finite loss or gradient skips the step and is
counted, and ``max_bad_steps`` of them in a row stop the run with :class:`NonFiniteLossError` (the last checkpoint
is left as it was); a checkpoint written with another model configuration raises :class:`CheckpointMismatchError`
naming the differing keys. SIGTERM or SIGUSR1 (a cluster's preemption, or its warning ahead of a time limit) stops
the run after the iteration under way, every process the same one, with a checkpoint (:mod:`.preemption`).

Data: :class:`StandInData` (synthetic in-context bandit-like sequences, a pure function of (seed, step, sequence
index), used when ``data.path`` is unset) or :class:`DatasetStream` (a synthesised dataset folder read through
``omnirl_core.synthesis.SequenceDataset``). Both yield dicts of [B, T] tensors: obs, tag, action, reward, label,
label_mask.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import model as M
from ..model.layers.common import kernel_record
from ..workbook.atomic import write_text_atomic
from ..workbook.config import dump_config
from ..workbook.errors import InputError, RunStopped
from ..workbook.locks import LOCK_FILE, folder_lock, remove_stale_temp_files
from .checkpoints import (
    CHECKPOINT,
    WEIGHTS,
    CheckpointMismatchError,
    _set_rng_state,
    describe_init,
    init_weights_from,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
    sync_weights,
)
from .config import TrainConfig
from .data import StandInData, make_data, mask_states
from .losses import _all_reduce_sum, accumulate_gradients, lr_at, position_loss
from .metrics import MetricsWriter
from .preemption import PREEMPTED_EXIT, StopRequest, TrainingPreempted, clear_preempted, signal_name, write_preempted


@dataclass
class TrainContext:
    """What an evaluation hook sees."""

    step: int
    model: torch.nn.Module
    cfg: TrainConfig
    out_dir: Path
    eval_batches: list[dict]


Hook = Callable[[TrainContext], "dict | None"]


def position_loss_hook(ctx: TrainContext) -> dict:
    """Built-in hook: policy loss against position on fixed evaluation batches."""
    return {"hook": "position_loss", **position_loss(ctx.model, ctx.eval_batches, ctx.cfg.chunk_len,
                                                     ctx.cfg.eval.position_bins)}


class NonFiniteLossError(RunStopped):
    """Too many consecutive iterations had a non-finite loss or gradient, or the weights became non-finite; the
    last checkpoint (if any) is untouched and no checkpoint with non-finite weights is ever written."""


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    step: int
    out_dir: Path
    model: torch.nn.Module
    bad_steps: int
    last_loss: float
    history: list[dict] = field(default_factory=list)
    start: int = 0  # the iteration it started at (> 0 for a resume; == step when there was nothing left to run)


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():  # else torch's own AssertionError, deep in the first .to()
        build = "a torch built without CUDA" if torch.version.cuda is None else "no CUDA device visible"
        raise InputError(f"device: {cfg.device!r}, but this machine has {build} (torch {torch.__version__}); "
                         "use device=cpu or device=auto")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def _eval_batches(cfg: TrainConfig) -> list[dict]:
    if cfg.data.path:  # the first batches of the dataset (training data; a held-out split is not made here)
        stream = make_data(cfg)
        return [stream.next_batch() for _ in range(cfg.eval.batches)]
    held_out = StandInData(cfg.data, cfg.seed + 10**6)  # another seed: sequences never trained on
    return [held_out.batch(k) for k in range(cfg.eval.batches)]


def _weights_finite(model: torch.nn.Module) -> bool:
    flags = [torch.isfinite(p).all() for p in model.parameters() if p.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def _outputs_finite(model: torch.nn.Module, batch: dict, chunk_len: int) -> bool:
    """Whether the model's outputs on the first chunk of ``batch`` are finite (logits and auxiliary heads)."""
    sl = slice(0, chunk_len)
    with torch.no_grad():
        logits, aux, _ = model(batch["obs"][:, sl], batch["tag"][:, sl], batch["action"][:, sl],
                               batch["reward"][:, sl])
    outs = [logits] + [v for v in (aux.values() if isinstance(aux, dict) else []) if isinstance(v, torch.Tensor)]
    return all(bool(torch.isfinite(v).all()) for v in outs)


def _last_checkpoint(path: Path, step: int | None) -> str:
    if step is None:
        return "No checkpoint was written."
    return f"The last checkpoint ({path}, iteration {step}) is left as it was."


def _record_preemption(out: Path, done: int, signum: int) -> None:
    """After the checkpoint of iteration ``done`` of a run asked to stop: the record in the folder, and one line."""
    write_preempted(out, done, signum)
    print(f"stopped by {signal_name(signum)}: checkpoint of iteration {done} written to {out / CHECKPOINT}; exit "
          f"code {PREEMPTED_EXIT}, the same command with --resume continues the run", file=sys.stderr, flush=True)


class RunFolderBusy(InputError):
    """Another training is writing the same run folder."""


@contextlib.contextmanager
def _run_folder(out: Path):
    """Hold the run folder's lock (the one every writer of the package uses: one training per folder) and clear
    temporary files of dead writers; a folder that this run created and left with nothing but its lock file (a
    refused run) is removed again."""
    created, had_lock = not out.exists(), (out / LOCK_FILE).exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(out, busy="another training is writing this run folder", error=RunFolderBusy):
            try:
                for tmp in remove_stale_temp_files(out):
                    print(f"removed {tmp.name}, a temporary file left by a process that is gone", file=sys.stderr)
                yield
            except (InputError, OSError):  # refused (before writing), or the disk failed: no lock file left behind
                if not had_lock:
                    (out / LOCK_FILE).unlink(missing_ok=True)
                raise
    finally:
        if created and [p.name for p in out.iterdir()] in ([], [LOCK_FILE]):
            (out / LOCK_FILE).unlink(missing_ok=True)
            out.rmdir()


KERNELS_FILE = "kernels.json"


def _write_kernels(path: Path, kernels: dict[str, list[str]]) -> None:
    """``{layer: [kernels it ran (reason)]}`` of the run's first iteration, written atomically."""
    write_text_atomic(path, json.dumps(kernels, indent=2))


def _refuse_weights_without_checkpoint(out: Path) -> None:
    if not (out / CHECKPOINT).is_file() and (out / WEIGHTS).is_file():
        raise FileExistsError(f"{out / WEIGHTS} exists without {CHECKPOINT} (a shipped model, or weights kept without "
                              f"their checkpoint): training into {out} would overwrite it; use another folder")


def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    hooks: Sequence[Hook] | None = None,
    progress: bool = True,
    allow_changes: bool = False,
    allow_unverified: bool = False,
) -> TrainResult:
    """Run (or with ``resume``, continue) meta-training; writes checkpoints and metrics under ``out_dir``.

    Works in one process or under ``torchrun`` (initialise ``torch.distributed`` first; :mod:`omnirl_core.training`
    does). ``hooks`` run on rank 0 every ``eval.every`` iterations and after the last one; their dicts go to
    ``eval.jsonl`` (default: :func:`position_loss_hook`). After its first iteration, ``kernels.json`` records
    which kernels each layer ran (fla's Triton ops or the PyTorch ones, and why: the ``[omnirl kernels]`` lines).

    Everything that can refuse the run (an existing checkpoint without ``resume``, a checkpoint of another
    configuration or one failing its checksum, ``init_from``, the data) is checked before anything is written, so
    a refused run leaves ``out_dir`` as it was. A resume must use the checkpoint's configuration except for
    :data:`~omnirl_core.training.checkpoints.RESUMABLE_CHANGES`; ``allow_changes`` accepts other changes (listed
    on stdout and in ``config.yaml``). ``allow_unverified`` accepts checkpoints and ``init_from`` files without a
    checksum (written before they were recorded), saying so on stderr.

    One training per run folder: a second one while the first runs is refused (:class:`RunFolderBusy`), and a
    folder holding ``model.safetensors`` without ``checkpoint.pt`` (a shipped model, or weights kept without their
    checkpoint) is refused rather than overwritten. A run whose final checkpoint cannot be written (the weights of
    its last iterations give non-finite outputs) raises :class:`NonFiniteLossError`: a returned result always has
    its checkpoint on disk. A resume first makes ``model.safetensors`` agree with ``checkpoint.pt`` (a write cut
    between the two leaves it older): when it does not hold the checkpoint's iteration and weights, it is rewritten
    from the checkpoint, saying so on stderr. A checkpoint past ``cfg.steps`` is refused (a run cannot go back).

    Preemption (:mod:`.preemption`): SIGTERM or SIGUSR1 while it runs (in the main thread) makes every process
    finish its iteration, write a checkpoint and raise :class:`~.preemption.TrainingPreempted` (the command
    line's exit code :data:`~.preemption.PREEMPTED_EXIT`); ``resume`` then continues exactly. The signals'
    previous handlers are restored when it returns.
    """
    kwargs = dict(resume=resume, hooks=hooks, progress=progress, allow_changes=allow_changes,
                  allow_unverified=allow_unverified)
    _refuse_weights_without_checkpoint(Path(out_dir))  # before the lock file: a model folder stays untouched
    rank, world = _dist()
    with StopRequest(f"[rank {rank}] " if world > 1 else "").installed() as stop:
        if rank != 0:  # rank 0 holds the folder for every process
            return _train(cfg, Path(out_dir), stop=stop, **kwargs)
        with _run_folder(Path(out_dir)):
            return _train(cfg, Path(out_dir), stop=stop, **kwargs)


def _train(cfg: TrainConfig, out_dir: Path, *, resume: bool, hooks: Sequence[Hook] | None, progress: bool,
           allow_changes: bool, allow_unverified: bool, stop: StopRequest) -> TrainResult:
    rank, world = _dist()
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT
    ckpt = None
    if ckpt_path.is_file():
        if not resume:
            raise FileExistsError(f"{ckpt_path} exists: pass resume=True (--resume) to continue, or use another folder")
        ckpt = load_checkpoint(ckpt_path, cfg, allow_unverified=allow_unverified, allow_changes=allow_changes)
        if len(ckpt["data"]) != world:
            raise CheckpointMismatchError(f"{ckpt_path} was written by {len(ckpt['data'])} processes, this run has "
                                          f"{world}: the data positions cannot be resumed exactly")
        if int(ckpt["step"]) > cfg.steps:
            raise CheckpointMismatchError(
                f"{ckpt_path} has done {ckpt['step']} iterations, more than steps={cfg.steps} asks for, and a run "
                f"cannot go back: set steps={ckpt['step']} (or more, to continue it) to use it, or use another "
                f"output folder for a run of {cfg.steps} iterations")
    device = _device(cfg)
    if cfg.torch_threads is not None and device.type == "cpu":
        torch.set_num_threads(cfg.torch_threads)
    hooks = [position_loss_hook] if hooks is None else list(hooks)

    # ---- model, optimiser, data ----------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = M.OmniRL(cfg.model).to(device)
    if cfg.init_from and ckpt is None:
        kept = init_weights_from(model, cfg.init_from, allow_unverified=allow_unverified)
        if rank == 0:
            print(describe_init(cfg.init_from, kept))
    o = cfg.optim
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr_at(0, o), betas=tuple(o.betas), eps=o.eps,
    )
    data = make_data(cfg, rank, world)
    start, counters = 0, {"bad_steps_total": 0, "bad_steps_in_a_row": 0}
    saved_step = None  # step of the checkpoint on disk, if any

    if ckpt is not None:
        load_model_weights(model, ckpt["model"], ckpt_path)
        optimizer.load_state_dict(ckpt["optimizer"])
        data.load_state_dict(ckpt["data"][rank])
        _set_rng_state(ckpt["rng"])
        counters.update(ckpt["counters"])
        start = saved_step = int(ckpt["step"])
        last_loss = float(ckpt.get("last_loss", float("nan")))
    if rank == 0:  # every check has passed: now the run folder may change
        out.mkdir(parents=True, exist_ok=True)
        header = "Configuration of this training run."
        if ckpt is not None and ckpt["changes"]:
            header += f"\nResumed at iteration {start} with changes (allow_changes): " + "; ".join(ckpt["changes"])
            print(f"resuming {ckpt_path} at iteration {start} with changed settings: " + "; ".join(ckpt["changes"]))
        dump_config(cfg, out / "config.yaml", header=header)
        clear_preempted(out)
        if ckpt is not None:
            wrong = sync_weights(out, ckpt, cfg)
            if wrong:
                print(f"{out / WEIGHTS} did not match {ckpt_path} ({wrong}): rewritten from the checkpoint "
                      f"(iteration {start})", file=sys.stderr)

    net = model
    if world > 1:
        unused_heads = cfg.model.world_model and not (cfg.loss.state > 0 or cfg.loss.reward > 0)
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused_heads
        )
    metrics = MetricsWriter(out, start, enabled=rank == 0, tensorboard=cfg.tensorboard)
    eval_batches = _eval_batches(cfg) if rank == 0 and hooks else []
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc="train", unit="it")

    history: list[dict] = []
    last_loss = last_loss if ckpt is not None else float("nan")
    t_start = time.perf_counter()
    t_log, steps_since_log, window = t_start, 0, {}
    model.train()
    for step in range(start, cfg.steps):
        # ---- one iteration of Algorithm 3 ------------------------------------------------------
        batch = {k: v.to(device) for k, v in data.next_batch().items()}
        obs_in = mask_states(batch["obs"], cfg.loss.state_mask_prob, cfg.model.ns_max, cfg.seed, step, rank, world)
        lr = lr_at(step, o)
        for g in optimizer.param_groups:
            g["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        with kernel_record() if step == start else contextlib.nullcontext({}) as kernels:
            terms = accumulate_gradients(net, batch, obs_in, cfg, scale=float(world), nan=step in cfg.inject_nan_steps)
        if world > 1:  # each process holds its share of the loss (divided by the global normaliser): add them
            keys = [k for k in terms if k != "finite"]
            summed = _all_reduce_sum(torch.tensor([terms[k] for k in keys], dtype=torch.float64, device=device))
            terms.update({k: float(v) for k, v in zip(keys, summed)})
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        # [this iteration is bad here, a signal asked this process to stop]: the maximum over the processes, so
        # that every one skips the same iterations and stops after the same one
        flags = torch.tensor([float(not (terms["finite"] and bool(torch.isfinite(grad_norm)))), float(stop.signum)],
                             device=device)
        if world > 1:
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        bad, asked = flags.tolist()
        good, stop_signal = bad == 0, int(asked)
        if good:
            optimizer.step()
            counters["bad_steps_in_a_row"] = 0
            if not _weights_finite(model):  # a finite gradient can still overflow the weights (e.g. a huge lr)
                metrics.close()
                raise NonFiniteLossError(
                    f"the weights became non-finite in iteration {step} (loss {terms['loss']:.4g}, gradient norm "
                    f"{float(grad_norm):.4g}, lr {lr:.3g}); stopped before writing them. "
                    + _last_checkpoint(ckpt_path, saved_step)
                )
        else:  # skip: keep the weights and optimiser state, count it
            optimizer.zero_grad(set_to_none=True)
            counters["bad_steps_total"] += 1
            counters["bad_steps_in_a_row"] += 1
            if counters["bad_steps_in_a_row"] >= cfg.max_bad_steps:
                metrics.close()
                raise NonFiniteLossError(
                    f"{counters['bad_steps_in_a_row']} consecutive iterations (up to {step}) had a non-finite loss or "
                    f"gradient; stopped. {_last_checkpoint(ckpt_path, saved_step)}"
                )
        if good:  # a skipped iteration's loss is not the run's
            last_loss = terms["loss"]
        done = step + 1
        if rank == 0 and step == start:  # the run's record of which kernels each layer ran (and why)
            _write_kernels(out / KERNELS_FILE, kernels)
        steps_since_log += 1
        for k in ("loss", "policy", "state", "reward"):
            window[k] = window.get(k, 0.0) + terms.get(k, 0.0)

        # ---- bookkeeping --------------------------------------------------------------------------
        if done % cfg.log_every == 0 or done == cfg.steps:
            now = time.perf_counter()
            sps = steps_since_log * batch["obs"].numel() * world / max(now - t_log, 1e-9)
            mean = {k: v / steps_since_log for k, v in window.items()}  # loss terms: mean since the last row
            row = {"step": done, **mean, "lr": lr, "grad_norm": float(grad_norm),
                   "skipped": int(not good), "bad_steps_total": counters["bad_steps_total"],
                   "steps_per_s": sps, "elapsed_s": now - t_start}
            history.append(row)
            metrics.log(row)
            t_log, steps_since_log, window = now, 0, {}
            if bar is not None:
                bar.set_postfix(loss=f"{terms['loss']:.4f}", lr=f"{lr:.2e}")
        if bar is not None:
            bar.update(1)
        if rank == 0 and hooks and ((cfg.eval.every and done % cfg.eval.every == 0) or done == cfg.steps):
            ctx = TrainContext(done, model, cfg, out, eval_batches)
            for hook in hooks:
                res = hook(ctx)
                if res:
                    metrics.log_eval({"step": done, **res})
        if world == 1 and stop.requested:  # one process: a signal during this iteration's bookkeeping counts too
            stop_signal = stop.signum
        # the last iteration always writes one (skipped iterations left the weights as they were): a finished run
        # has the checkpoint of its final state; so does a run asked to stop
        if (done % cfg.checkpoint_every == 0 and counters["bad_steps_in_a_row"] == 0) or done == cfg.steps \
                or stop_signal:
            # the weights about to be written have not been run yet: they must give finite outputs
            finite = torch.tensor([float(_outputs_finite(model, batch, cfg.chunk_len))], device=device)
            if world > 1:
                torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
            if finite.item() == 0:
                metrics.close()
                raise NonFiniteLossError(
                    f"the weights after iteration {step} give non-finite outputs (lr {lr:.3g}); stopped without "
                    "writing them. " + _last_checkpoint(ckpt_path, saved_step))
            data_states = [data.state_dict()]
            if world > 1:
                data_states = [None] * world
                torch.distributed.all_gather_object(data_states, data.state_dict())
            if rank == 0:
                save_checkpoint(out, step=done, model=model, optimizer=optimizer, data_states=data_states, cfg=cfg,
                                counters=counters, last_loss=last_loss)
                if stop_signal and done < cfg.steps:
                    _record_preemption(out, done, stop_signal)
            saved_step = done
            if world > 1:  # no process leaves before the checkpoint (and the preemption record) is written
                torch.distributed.barrier()
        if stop_signal and done < cfg.steps:
            if bar is not None:
                bar.close()
            metrics.close()
            raise TrainingPreempted(f"stopped by {signal_name(stop_signal)} after iteration {done}; its checkpoint "
                                    f"is in {out}: run again with resume=True (--resume) to continue", done,
                                    signal_name(stop_signal))
    if bar is not None:
        bar.close()
    metrics.close()
    if rank == 0 and counters["bad_steps_in_a_row"] and start < cfg.steps:
        print(f"warning: the last {counters['bad_steps_in_a_row']} iteration(s) had a non-finite loss or gradient "
              "and were skipped; the checkpoint holds the weights of the last good iteration", file=sys.stderr)
    return TrainResult(cfg.steps, out, model, counters["bad_steps_total"], last_loss, history, start=start)
