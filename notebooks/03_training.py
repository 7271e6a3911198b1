# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     name: omnirl
#     display_name: OmniRL (.venv)
#     language: python
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
# trains a small model and shows its loss curves and its loss against position in the context.
#
# The same loop runs on 8 GPUs with `torchrun --nproc_per_node 8 -m omnirl_core.training
# params/paper/03_training.yaml` (DistributedDataParallel, bf16 autocast).

# %% tags=["parameters"]
config_path = "params/quick/03_training.yaml"
run_dir = "outputs/quick"

# %%
import json
from pathlib import Path

import torch
from IPython.display import Image, Markdown, display

from omnirl_core import training, views
from omnirl_core.model import OmniRL, count_parameters, ramp_weights
from omnirl_core.training import TrainConfig
from omnirl_core.workbook import config_to_dict, load_config, notebook_config, repo_path, run_artefact

torch.set_flush_denormal(True)  # subnormal floats slow CPU backward passes a lot
cfg = notebook_config("03_training", globals())  # the file, then what papermill injected; saved in run_dir
if cfg.data.path:  # a dataset that notebook 02 wrote into this run folder (or an absolute path)
    cfg.data.path = str(run_artefact(repo_path(run_dir), cfg.data.path, key="data.path", made_by="02_synthesis"))
out_dir = repo_path(run_dir) / "03_training"
out_dir.mkdir(parents=True, exist_ok=True)


def save(fig, name):
    """Save a figure into the run directory and show it inline."""
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=110)
    display(Image(filename=str(path)))


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
a1.set(xlabel="step t in the sequence", ylabel="w_t", title="position weights")
steps = list(range(cfg.steps))
a2.plot(steps, [training.lr_at(s, cfg.optim) for s in steps])
a2.set(xlabel="iteration", ylabel="learning rate", title="warmup, then 1/sqrt decay")
fig.tight_layout()
save(fig, "schedules")

# %% [markdown]
# ## 3. Chunks with a carried, detached memory
#
# `training.accumulate_gradients` is one iteration of Algorithm 3 without the optimiser step. Below, the same
# batch goes through a model twice: once as a single chunk (full back-propagation through time) and once in
# chunks. The loss values agree: the memory carries the whole context forward, so the *forward* pass is the same.
# The gradients differ: the stop-gradient on the memory cuts back-propagation at chunk boundaries (truncated
# BPTT), which is what makes 12K-step sequences fit in memory. At initialisation the difference is tiny (RWKV-7
# starts its output projections at zero, so little gradient flows through the memory yet); the comparison is
# repeated on the trained model in section 5.


# %%
def compare_chunking(model, chunk_len):
    """Loss and gradient of one batch, unchunked vs in chunks of ``chunk_len`` steps."""
    T_all = batch["obs"].shape[1]
    res = {}
    for name, chunk in (("one chunk (full BPTT)", T_all), (f"chunks of {chunk_len}", chunk_len)):
        model.zero_grad()
        c = load_config(TrainConfig, config_to_dict(cfg), overrides={"chunk_len": chunk})
        terms = training.accumulate_gradients(model, batch, batch["obs"], c)
        res[name] = (terms["loss"], torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    model.zero_grad()
    (n1, (l1, g1)), (n2, (l2, g2)) = res.items()
    rel = float((g1 - g2).norm() / g1.norm())
    return Markdown(f"| run | loss | gradient norm |\n|---|---|---|\n| {n1} | {l1:.5f} | {g1.norm():.4f} |\n"
                    f"| {n2} | {l2:.5f} | {g2.norm():.4f} |\n\nRelative difference of the two gradients: "
                    f"**{rel:.2e}** ({T_all // chunk_len} chunks).")


torch.manual_seed(cfg.seed)
display(compare_chunking(OmniRL(cfg.model), cfg.chunk_len))

# %% [markdown]
# ## 4. Training
#
# `training.train` runs the loop: data, state masking, Algorithm 3, gradient clipping, AdamW, metrics
# (`metrics.csv`, `metrics.jsonl`, TensorBoard events when installed), evaluation hooks (`eval.jsonl`) and atomic
# checkpoints (`checkpoint.pt`, loadable with `torch.load(weights_only=True)`, and `model.safetensors`). It is
# called with `resume=True`: running this notebook again continues from the checkpoint (a finished run is not
# repeated), exactly as `python -m omnirl_core.training ... --resume` after an interruption. A non-finite loss skips
# its iteration (counted in `bad_steps_total`); `max_bad_steps` of them in a row stop the run with
# `NonFiniteLossError`, leaving the last checkpoint as it was. With `launch.nproc_per_node` above 1 (the paper
# profile: 8, one process per GPU) the cell starts the same training under torchrun instead
# (`training.train_or_launch`): its progress bar follows rank 0's metrics, a failing rank fails the cell with
# that rank's own error (every rank's output is in `03_training/run/launch_logs/`), and the finished run is read
# back from its checkpoint, so the rest of the notebook is the same. The summary's last row says which kernels
# each layer ran (fla's Triton ops or the PyTorch ones, and why), from `run/kernels.json` that training writes.

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
    "iterations / s (median)": round(sorted(speed)[len(speed) // 2] / batch["obs"].numel(), 2),
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

# %%
save(views.plot_loss_curves(rows), "loss_curves")

# %% [markdown]
# The chunking comparison of section 3 again, on the trained model: the forward pass still agrees exactly, and
# the gradients now differ measurably where back-propagation is cut at the chunk boundaries.

# %%
display(compare_chunking(result.model, max(1, cfg.chunk_len // 4)))

# %% [markdown]
# ## 6. Loss against position in the context
#
# The signature of in-context learning: the loss falls along the sequence as the model gathers evidence about
# the task in its memory. Each curve is one evaluation (on held-out stand-in sequences, or on the first batches
# of the dataset); a model that has learned to learn in context shows curves sloping down, more steeply as
# training goes on.

# %%
save(views.plot_position_loss(evals), "position_loss")
if evals:
    last = evals[-1]
    k = max(1, len(last["loss"]) // 4)
    early, late = sum(last["loss"][:k]) / k, sum(last["loss"][-k:]) / k
    display(Markdown(f"Last evaluation: mean loss over the first quarter of the context **{early:.3f}**, over the "
                     f"last quarter **{late:.3f}**."))

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
    save(views.plot_loss_curves(post_rows), "post_loss_curves")
else:
    display(Markdown("No post-training stage in these parameters (`post_training.data_path` is unset)."))

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
Path(out_dir / "config_used.json").write_text(json.dumps(config_to_dict(cfg), indent=2))
