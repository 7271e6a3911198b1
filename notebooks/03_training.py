# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: OmniRL (.venv)
#     language: python
#     name: omnirl
# ---

# %% [markdown]
# # 03 · Meta-training (Algorithm 3)
#
# OmniRL is trained by imitation: at every step t of a long sequence (many episodes of one random task) it
# predicts the oracle's action a*_t from everything before it. The sequences are long (12K steps in the paper,
# four tokens per step), so the paper trains them **chunk by chunk**:
#
# 1. split each sequence into chunks (2K steps);
# 2. run chunk k starting from the memory the model left after chunk k-1, with a stop-gradient on that memory;
# 3. back-propagate each chunk's loss right away and *accumulate* gradients over the whole sequence;
# 4. take one optimiser step per batch of sequences (AdamW, peak lr 2e-4, warmup then 1/sqrt decay, gradient
#    norm clipped to 1.0).
#
# The loss is a position-weighted cross entropy: weights ramp from 1e-3 to 1 over the first 512 steps, since
# early in a sequence there is little context to infer the task from. 15% of the input states are replaced by
# the "masked" id as a regulariser. This notebook walks through each piece with `omnirl_core.training`, then
# trains a small model and shows its loss curves and its loss against position in the context, and ends with a
# table of what this run shows.
#
# The same loop runs on 8 GPUs with `torchrun --nproc_per_node 8 -m omnirl_core.training
# params/paper/03_training.yaml` (DistributedDataParallel, bf16 autocast).

# %% tags=["parameters"]
config_path = "params/quick/03_training.yaml"
run_dir = "outputs/quick"

# %%
import json
from pathlib import Path

import numpy as np
import torch
from IPython.display import Markdown, display

from omnirl_core import training, views
from omnirl_core.evaluation.incontext import mean_ci
from omnirl_core.model import OmniRL, count_parameters, ramp_weights
from omnirl_core.training import TrainConfig
from omnirl_core.training.metrics import position_loss_per_sequence
from omnirl_core.workbook import config_to_dict, load_config, notebook_config, repo_path, run_artefact
from omnirl_core.workbook.claims import HOLDS, ClaimSheet
from omnirl_core.workbook.figures import no_figure, show_figure

torch.set_flush_denormal(True)  # subnormal floats slow CPU backward passes a lot
cfg = notebook_config("03_training", globals())  # the file, then what papermill injected; saved in run_dir
if cfg.data.path:  # a dataset that notebook 02 wrote into this run folder (or an absolute path)
    cfg.data.path = str(run_artefact(repo_path(run_dir), cfg.data.path, key="data.path", made_by="02_synthesis"))
out_dir = repo_path(run_dir) / "03_training"
out_dir.mkdir(parents=True, exist_ok=True)
sheet = ClaimSheet(out_dir)  # the claims of this run, shown at the end and kept in 03_training/claims.json
display(Markdown(f"Model: **{cfg.model.backbone}**, layout `{cfg.model.layout}`, {cfg.model.num_layers} blocks x "
                 f"{cfg.model.hidden_size}: **{count_parameters(cfg.model) / 1e6:.2f}M** parameters. "
                 f"Batch {cfg.data.batch_size} sequences x {cfg.data.seq_len} steps, chunks of {cfg.chunk_len} "
                 f"steps, {cfg.steps} iterations. Data: "
                 + (f"`{cfg.data.path}`" if cfg.data.path else "the synthetic stand-in")
                 + f". Runs as: {training.describe_launch(cfg, out_dir / 'run')}."))
cfg

# %% [markdown]
# ## 1. The data
#
# A batch is a dict of `[B, T]` tensors: `obs`, `tag`, `action`, `reward` are the model's inputs, `label` the
# oracle action a*_t and `label_mask` says which steps count (episode-end steps do not). With `data.path` set,
# sequences come from a dataset synthesised in notebook 02 (`omnirl_core.synthesis.SequenceDataset`, sharded by
# process); otherwise from a small synthetic stand-in where every sequence hides a best action per state that
# can only be inferred from context (rewards of past actions).

# %%
data = training.make_data(cfg)
batch = data.next_batch()
display(Markdown("| field | shape | dtype | first values |\n|---|---|---|---|\n" + "\n".join(
    f"| `{k}` | {tuple(v.shape)} | {str(v.dtype).replace('torch.', '')} | {v[0, :12].tolist()} |"
    for k, v in batch.items())))

# %% [markdown]
# ## 2. Position weights and the learning-rate schedule
#
# `w_t` rises linearly from `loss.ramp_start` to 1 over `loss.ramp_steps` steps. Every chunk's loss is divided
# by the same sequence-level normaliser `N = sum_t w_t m_t` (over the whole batch, and over all processes under
# DDP), so the gradients accumulated chunk by chunk add up to the gradient of one sequence-level loss. The
# learning rate warms up linearly, then decays as `1/sqrt(step)`.

# %%
import matplotlib.pyplot as plt  # noqa: E402

fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.2))
T = cfg.data.seq_len or 4 * cfg.loss.ramp_steps
a1.plot(ramp_weights(T, 0, cfg.loss.ramp_steps, cfg.loss.ramp_start).numpy())
a1.set(xlabel="step t in the sequence", ylabel="loss weight w_t", title="position weights")
steps = list(range(cfg.steps))
a2.plot(steps, [training.lr_at(s, cfg.optim) for s in steps])
a2.set(xlabel="iteration", ylabel="learning rate", title="warmup, then 1/sqrt decay")
fig.tight_layout()
_ = show_figure(fig, out_dir / "schedules.png")

# %% [markdown]
# ## 3. Chunks with a carried, detached memory
#
# `training.accumulate_gradients` is one iteration of Algorithm 3 without the optimiser step. Below, the same
# batch goes through a model twice: once as a single chunk (full back-propagation through time) and once in
# chunks. The loss values should agree: the memory carries the whole context forward, so the *forward* pass is the
# same. The gradients should differ: the stop-gradient on the memory cuts back-propagation at chunk boundaries
# (truncated BPTT), which is what makes 12K-step sequences fit in memory. At initialisation the difference should
# be small (RWKV-7 starts its output projections at zero, so little gradient flows through the memory yet); the
# comparison is repeated on the trained model in section 5.


# %%
def compare_chunking(model, chunk_len):
    """Loss and gradient of one batch, unchunked vs in chunks of ``chunk_len`` steps: (table, relative loss
    difference, relative gradient difference)."""
    T_all = batch["obs"].shape[1]
    res = {}
    for name, chunk in (("one chunk (full BPTT)", T_all), (f"chunks of {chunk_len}", chunk_len)):
        model.zero_grad()
        c = load_config(TrainConfig, config_to_dict(cfg), overrides={"chunk_len": chunk})
        terms = training.accumulate_gradients(model, batch, batch["obs"], c)
        res[name] = (terms["loss"], torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    model.zero_grad()
    (n1, (l1, g1)), (n2, (l2, g2)) = res.items()
    rel_loss = abs(l1 - l2) / abs(l1)
    rel = float((g1 - g2).norm() / g1.norm())
    n_chunks = -(-T_all // chunk_len)
    table = Markdown(f"| run | loss | gradient norm |\n|---|---|---|\n| {n1} | {l1:.5f} | {g1.norm():.4f} |\n"
                     f"| {n2} | {l2:.5f} | {g2.norm():.4f} |\n\nRelative difference of the losses: "
                     f"**{rel_loss:.1e}**; of the two gradients, \\|g_full - g_chunked\\| / \\|g_full\\|: "
                     f"**{rel:.2e}** ({n_chunks} chunks of {chunk_len} steps, {n_chunks - 1} cut(s) in "
                     f"{T_all} steps).")
    return table, rel_loss, rel


torch.manual_seed(cfg.seed)
table, _, _ = compare_chunking(OmniRL(cfg.model), cfg.chunk_len)
display(table)

# %% [markdown]
# ## 4. Training
#
# `training.train` runs the loop: data, state masking, Algorithm 3, gradient clipping, AdamW, metrics
# (`metrics.csv`, `metrics.jsonl`, TensorBoard events when installed), evaluation hooks (`eval.jsonl`) and atomic
# checkpoints (`checkpoint.pt`, loadable with `torch.load(weights_only=True)`, and `model.safetensors`). It is
# called with `resume=True`: running this notebook again continues from the checkpoint (a finished run is not
# repeated), exactly as `python -m omnirl_core.training ... --resume` after an interruption. A non-finite loss skips
# its iteration (counted in `bad_steps_total`); `max_bad_steps` of them in a row stop the run with
# `NonFiniteLossError`, leaving the last checkpoint as it was. With `launch.nproc_per_node` above 1 (the quick
# profile: 2, one process per core; the paper profile: 8, one per GPU) the cell starts the same training under
# torchrun instead (`training.train_or_launch`): its progress bar follows rank 0's metrics, a failing rank fails
# the cell with that rank's own error (every rank's output is in `03_training/run/launch_logs/`), and the finished
# run is read back from its checkpoint, so the rest of the notebook is the same. The summary's last row says which
# kernels each layer ran (fla's Triton ops or the PyTorch ones, and why), from `run/kernels.json` that training
# writes.

# %%
result = training.train_or_launch(cfg, out_dir / "run", resume=True, progress=True)
rows = training.read_metrics(out_dir / "run")
evals = training.read_eval(out_dir / "run")
speed = [r["steps_per_s"] for r in rows[1:]] or [rows[-1]["steps_per_s"]]
summary = {
    "iterations": result.step,
    "final loss (last row)": round(rows[-1]["loss"], 4),
    "skipped iterations": result.bad_steps,
    "environment steps / s (median)": round(sorted(speed)[len(speed) // 2]),
    # steps_per_s counts every process's sequences; `batch` holds one process's
    "iterations / s (median)": round(sorted(speed)[len(speed) // 2]
                                     / (batch["obs"].numel() * cfg.launch.nproc_per_node), 2),
    "wall time (s)": round(rows[-1]["elapsed_s"], 1),
}
# which kernels each layer ran (fla's Triton ops or the PyTorch ones, and why), as the training process recorded
kernels_file = out_dir / "run" / training.loop.KERNELS_FILE
kernels = json.loads(kernels_file.read_text()) if kernels_file.is_file() else {}
summary["kernels"] = "; ".join(f"{layer}: {', '.join(ran)}" for layer, ran in kernels.items()) or "not recorded"
(out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
display(Markdown("| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in summary.items())))

# %% [markdown]
# ## 5. Loss curves
#
# Each logged row averages the loss of the iterations since the previous row (training batches). The loss should
# fall as the model learns; the claim compares the first tenth of the logged rows with the last tenth (rows
# paired in order; interval over the pairs).

# %%
_ = show_figure(views.plot_loss_curves(rows), out_dir / "loss_curves.png")
k_rows = max(2, len(rows) // 10)
m, lo, hi = mean_ci(np.array([r["loss"] for r in rows[:k_rows]]) - np.array([r["loss"] for r in rows[-k_rows:]]))
_ = sheet.above("loss_falls", f"The training loss falls: first {k_rows} logged rows minus the last {k_rows}", m,
                (lo, hi), 0.0, measure="weighted loss, over row pairs")

# %% [markdown]
# The chunking comparison of section 3 again, on the trained model and at the chunk length it was trained with
# (`chunk_len`): one batch of training sequences, run once whole and once in chunks. The forward pass should still
# agree (the memory carries the whole context forward); the claim checks the loss to a relative tolerance of
# 1e-4. The gradients differ by exactly the part that truncated BPTT drops, the gradient that flows back through
# the memory across the cut(s) between chunks. That difference is not an error: its size says how much of this
# trained model's full gradient comes from credit assignment across a chunk boundary, on this batch.

# %%
table, rel_loss, rel_grad = compare_chunking(result.model, cfg.chunk_len)
display(table)
ppm = rel_loss * 1e6  # in parts per million: the tolerance 1e-4 is 100
_ = sheet.below("chunked_forward_equal", f"Chunked forward pass (chunks of {cfg.chunk_len}) gives the loss of the "
                "one-chunk pass, trained model (within a relative 1e-4)", ppm, (ppm, ppm), 100.0,
                measure="relative loss difference in parts per million, one batch",
                note="deterministic: one batch, no sampling interval")

# %% [markdown]
# ## 6. Loss against position in the context
#
# The signature of in-context learning: the loss falls along the sequence as the model gathers evidence about
# the task in its memory. The evaluation hook, every `eval.every` iterations, measures it on fixed batches: with a
# dataset (`data.path`) these are the dataset's **first `eval.batches` training batches**, sequences the model
# also trains on (no held-out split is made), and with the stand-in data held-out sequences of another seed. Each
# curve is one evaluation; a model that has learned to learn in context shows curves sloping down, where an
# early one is flat (the label's marginals only); from one evaluation to the next the curves need not improve
# steadily.
#
# The claim uses sequences the model never trained on, where there are some: the first `data.seq_len` steps of
# the post-training dataset (`post_training.data_path`, another seed of the same process), else training batches
# (and it says so). It compares, per sequence, the policy cross entropy in the first position bin with that in
# the last bin, with an interval over sequences.

# %%
_ = show_figure(views.plot_position_loss(evals, title=("loss against position, on the first training batches"
                                                       if cfg.data.path else "loss against position, held-out")),
                out_dir / "position_loss.png")
held_over = {"data.batch_size": cfg.data.batch_size * cfg.launch.nproc_per_node}  # one iteration, all processes
if cfg.post_training.data_path:
    held_path = run_artefact(repo_path(run_dir), cfg.post_training.data_path, key="post_training.data_path",
                             made_by="02_synthesis")
    held_over |= {"data.path": str(held_path), "data.standin_share": 0.0}
    what = f"held-out: sequences of {held_path.name}, never trained on by this model"
else:
    what = "training batches (no held-out dataset in these parameters)"
held_cfg = load_config(TrainConfig, config_to_dict(cfg), overrides=held_over)
held = training.make_data(held_cfg)
n_batches = max(cfg.eval.batches, 4)
if hasattr(held, "ds"):  # a dataset: no batch twice
    n_batches = min(n_batches, len(held.ds))
held_batches = [held.next_batch() for _ in range(n_batches)]
T_all = held_batches[0]["obs"].shape[1]
edges = np.linspace(0, T_all, cfg.eval.position_bins + 1).astype(int)
per_seq = position_loss_per_sequence(result.model, held_batches, cfg.chunk_len, edges)
gap = per_seq[:, 0] - per_seq[:, -1]
gap = gap[np.isfinite(gap)]
m, lo, hi = mean_ci(gap)
display(Markdown(f"On {gap.size} sequences ({what}): policy cross entropy at steps {edges[0]}-{edges[1] - 1} "
                 f"**{np.nanmean(per_seq[:, 0]):.3f}**, at steps {edges[-2]}-{edges[-1] - 1} "
                 f"**{np.nanmean(per_seq[:, -1]):.3f}**; first minus last bin {m:+.3f} [{lo:+.3f}, {hi:+.3f}]."))
_ = sheet.above("loss_falls_along_context", f"The trained model's loss falls along the context: policy cross "
                f"entropy at steps {edges[0]}-{edges[1] - 1} minus at steps {edges[-2]}-{edges[-1] - 1}", m, (lo, hi),
                0.0, measure=f"nats, over {gap.size} sequences", note=what)

# %% [markdown]
# ## 7. Post-training on long sequences (D_Long)
#
# The paper saw the loss on a 1M-step context rise beyond about 80K steps, longer than any training sequence (12K),
# and post-trained the model on D_Long (12K sequences of 512K steps). `post_training` in the parameters names that
# stage: the model above, continued on notebook 02's `data/d_long` for `post_training.steps` iterations at its own
# learning rate; every other setting is this run's. It writes `03_training/post/` (the same files as `run/`) and
# resumes like the main run; notebook 04 measures both models along contexts far longer than either was trained on.
# From a shell: `python -m omnirl_core.training <yaml> --out <run folder> --post`.

# %%
post = None
if cfg.post_training.data_path:
    cfg.post_training.data_path = str(run_artefact(repo_path(run_dir), cfg.post_training.data_path,
                                                   key="post_training.data_path", made_by="02_synthesis"))
    post_cfg = training.post_training_config(cfg, out_dir / "run" / training.WEIGHTS)
    post = training.train_or_launch(post_cfg, out_dir / "post", resume=True, progress=True)
    post_rows = training.read_metrics(out_dir / "post")
    post_len = post_cfg.data.seq_len or json.loads((Path(post_cfg.data.path) / "manifest.json").read_text())["seq_len"]
    display(Markdown(f"Post-training: **{post.step}** iterations of {post_cfg.data.batch_size} x "
                     f"{post_len} steps on `{post_cfg.data.path}`, last loss "
                     f"{post_rows[-1]['loss']:.4f} ({post_rows[-1]['elapsed_s']:.0f} s)."))
    show_figure(views.plot_loss_curves(post_rows, title="post-training loss"), out_dir / "post_loss_curves.png")
else:
    no_figure("no post-training stage in these parameters (post_training.data_path is unset)")

# %% [markdown]
# ## 8. At the paper's scale
#
# `params/paper/03_training.yaml` holds the paper's settings: RWKV-7 18 x 512 (43.8M parameters), 5 sequences
# of 12K steps per GPU on D_Large (notebook 02's `data/d_large`), chunks of 2K steps, AdamW at 2e-4 with 2000
# warmup iterations, clip 1.0, ramp over 512 steps, 15% state masking, policy loss only, and
# `launch.nproc_per_node: 8`: run by papermill on the 8-GPU node, this notebook starts torchrun itself (for the
# post-training stage too: 1 sequence of 512K steps per GPU on D_Long, 1,500 iterations at 1e-4). The
# processes each read their own shards; their losses are divided by a normaliser summed over all of them, so
# the averaged gradient equals that of one process holding the combined batch. From a shell, the same run is
#
# ```
# torchrun --nproc_per_node 8 -m omnirl_core.training params/paper/03_training.yaml \
#     --out outputs/paper/03_training/run data.path=outputs/paper/data/d_large --resume
# ```

# %%
_ = Path(out_dir / "config_used.json").write_text(json.dumps(config_to_dict(cfg), indent=2))

# %% [markdown]
# ## What this run shows
#
# Each claim of this notebook with the number this run computed, its 95% interval and the rule that decides
# the verdict: *holds* when the whole interval is on the claimed side, *contradicted* when it is wholly on the
# other, *not shown* otherwise. The table is also written to `03_training/claims.json`.

# %%
weak = [c for c in sheet.claims.values() if c.verdict != HOLDS]
display(Markdown("### What this run shows\n\n" + sheet.markdown() + "\n\n" + (
    f"{len(sheet.claims) - len(weak)} of {len(sheet.claims)} claims hold in this run. Not holding: "
    + "; ".join(f"*{c.claim}* ({c.verdict})" for c in weak) + "." if weak else "Every claim holds in this run.")))
