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
# # 02 · Data synthesis by decoupled policy distillation
#
# OmniRL is trained by imitation, but not of the policy that produced the data. **Decoupled policy
# distillation (DPD)** separates the two roles of a trajectory (paper section 2, Algorithm 2):
#
# - the **behaviour** that acts is drawn from a broad mixture: drifting random policies, a model-based learner
#   and a Q-learner (each with its own hyperparameters drawn per sequence, half of them with decaying noise),
#   the model-based learner mixed with oracles of four discounts,
#   noisy oracles whose epsilon decays, and pure oracles. Learners learn from *every* executed step, so a
#   learner switched in later is already partly trained; in 85% of sequences the behaviour is re-drawn with
#   probability 0.2 at each episode end;
# - the **label** of every step is the action of the oracle (value iteration on the true task, gamma 0.994)
#   in the current state, whatever the behaviour did.
#
# Each step also carries a **tag** saying which kind of policy acted (0-3 oracles, 4 model-based, 5 Q-learning,
# 6 random, 7 unknown); tags of whole sequences and of single episodes are masked to 7 (15% each), so the
# model learns to act with and without that prior. After every episode one **boundary step** is stored
# (the final state, action `na`, reward 0, tag 7, label masked out of the loss) in place of a terminal token.
#
# This notebook synthesises the datasets of its parameter file with `omnirl_core.synthesis` (sharded,
# resumable, byte-identical whatever the worker count), looks at a few sequences, checks the tag and masking
# rates and the per-tag rewards along the sequence, and opens the training loader `omnirl_core.synthesis.reader`.

# %% tags=["parameters"]
config_path = "params/quick/02_synthesis.yaml"
run_dir = "outputs/quick"

# %%
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from omnirl_core import synthesis
from omnirl_core.synthesis import SequenceDataset
from omnirl_core.workbook import describe, notebook_config, repo_path

cfg = notebook_config("02_synthesis", globals())  # the file, then what papermill injected; saved in run_dir
out_dir = repo_path(run_dir) / "02_synthesis"
out_dir.mkdir(parents=True, exist_ok=True)
data_root = Path(cfg.data_dir) if Path(cfg.data_dir).is_absolute() else repo_path(run_dir) / cfg.data_dir
print("datasets:", ", ".join(cfg.datasets), "->", data_root)

# %% [markdown]
# ## The configuration
#
# Everything that determines a dataset's bytes is in its `DatasetConfig` (with the mixture weights and
# schedules, defaults = the paper's); the number of workers is not. The table lists the fields.

# %%
from omnirl_core.synthesis import DatasetConfig  # noqa: E402

display(Markdown(describe(DatasetConfig)))

# %% [markdown]
# ## Synthesis
#
# Shard `k` of a dataset is a pure function of its configuration, its seed and `k`. Workers take whole shards;
# each shard is written to a temporary folder and renamed into place, and the manifest (schema version, full
# configuration, seed, per-shard counts and sha256) is rewritten atomically after each shard. Re-running
# this cell resumes an interrupted synthesis and skips the shards already on disk after checking them.

# %%
timings = {}
for name, dcfg in cfg.datasets.items():
    t0 = time.perf_counter()
    man = synthesis.synthesize(dcfg, data_root / name, workers=cfg.workers)
    dt = time.perf_counter() - t0
    steps = dcfg.n_sequences * dcfg.seq_len
    timings[name] = {"steps": steps, "seconds": dt, "steps_per_s": steps / dt, "workers": cfg.workers}
    size = sum(f.stat().st_size for f in (data_root / name).rglob("*.npy"))
    print(f"{name}: {man['n_shards']} shards, {steps:,} steps in {dt:.1f} s "
          f"({steps / dt:,.0f} steps/s with {cfg.workers} workers, engine {dcfg.engine}), {size / 1e6:.1f} MB")
    print("  (a re-run finds the shards on disk, verifies and keeps them: then the rate above is meaningless)")
(out_dir / "timings.json").write_text(json.dumps(timings, indent=1))

# %% [markdown]
# ## A look at a few sequences
#
# Each panel is one sequence: the observation id, the executed action, the reward and the tag (coloured), with boundary
# steps as grey lines and behaviour switches as red dashed lines. Labels (the oracle's action) are shown
# as green dots just above the executed actions; where they coincide the behaviour acted like the oracle.

# %%
first = next(iter(cfg.datasets))
dcfg = cfg.datasets[first]
data = synthesis.load_dataset_arrays(data_root / first, max_shards=4)
n_show = min(cfg.show_sequences, data["obs"].shape[0])
if n_show:
    fig, axes = plt.subplots(n_show, 1, figsize=(12, 3.0 * n_show), squeeze=False)
    L = min(cfg.show_steps, dcfg.seq_len)
    na = int(data["na"][0])
    for i, ax in enumerate(axes[:, 0]):
        t = np.arange(L)
        beh = data["behaviour"][i, :L].astype(int)
        tag = data["tag"][i, :L].astype(int)
        act = data["action"][i, :L].astype(int)
        lab = data["label"][i, :L].astype(int)
        real = beh != synthesis.BOUNDARY
        # bands: tags at -9..-2, actions and labels at 0..na, observations above
        ax.scatter(t, tag - 10, c=tag, cmap="tab10", vmin=0, vmax=9, s=6, label="tag (band -10..-3)")
        ax.plot(t[real], act[real], ".", ms=3, color="tab:blue", label="action")
        ax.plot(t[real], lab[real] + 0.25, ".", ms=2, color="tab:green", label="label (+0.25)")
        ax.step(t, data["obs"][i, :L].astype(int) + na + 2, where="post", lw=0.7, color="0.3",
                label=f"obs (+{na + 2})")
        ax2 = ax.twinx()
        ax2.plot(t, data["reward"][i, :L], lw=0.6, color="tab:orange")
        ax2.set_ylabel("reward", color="tab:orange")
        for b in np.flatnonzero(~real):
            ax.axvline(b, color="0.8", lw=0.8)
        prev = None
        for j in np.flatnonzero(real):
            if prev is not None and beh[j] != prev:
                ax.axvline(j, color="red", ls="--", lw=1)
            prev = beh[j]
        names = [synthesis.BEHAVIOURS[b] for b in dict.fromkeys(beh[real].tolist())]
        ax.set_title(f"sequence {i}: ns={data['ns'][i]}, behaviours in order: {', '.join(names)}", fontsize=9)
        if i == 0:
            ax.legend(loc="upper right", fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out_dir / "sequences.png", dpi=100)
    plt.show()

# %% [markdown]
# ## Tags and masking
#
# About 15% of the sequences have every tag set to 7, and in the rest about 15% of the episodes do; boundary
# steps add tag-7 steps with masked labels. The masked-label fraction is the share of steps that do not
# enter the loss.

# %%
stats = synthesis.tag_statistics(data)
display(Markdown("| quantity | fraction |\n|---|---|\n" + "\n".join(f"| {k} | {v:.3f} |" for k, v in stats.items())))
(out_dir / "tag_statistics.json").write_text(json.dumps(stats, indent=1))

# %% [markdown]
# ## The learners' hyperparameters
#
# Each sequence draws the hyperparameters of its Q-learner and of its model-based learner once (stored per
# sequence as `learner_params`): with probability 0.5 the noise-free branch (c = 0.005, alpha = 0.01,
# gamma ~ U(0.90, 0.99)), else the noisy branch (c = 0.005 Exp(1), alpha = 0.01 Exp(1), gamma 0.99, a random-action
# probability starting at U(0.1, 0.5) that decays while the learner's behaviour acts).

# %%
lp = data["learner_params"]
col = {n: i for i, n in enumerate(synthesis.LEARNER_PARAMS)}
hp_rows = []
for learner, scale in (("q", "alpha"), ("mb", "c")):
    noisy = lp[:, col[f"{learner}_noisy"]] == 1
    for branch, m in (("noise-free", ~noisy), ("noisy", noisy)):
        if not m.any():
            continue
        g, x = lp[m, col[f"{learner}_gamma"]], lp[m, col[f"{learner}_{scale}"]]
        p0 = lp[m, col[f"{learner}_noise_start"]]
        hp_rows.append(f"| {learner} | {branch} | {m.mean():.2f} | {g.min():.3f} .. {g.max():.3f} | {scale} mean "
                       f"{x.mean():.4f} (min {x.min():.4f}, max {x.max():.4f}) | {p0.mean():.2f} |")
display(Markdown("| learner | branch | share | gamma | step size / bonus scale | mean initial noise |\n"
                 "|---|---|---|---|---|---|\n" + "\n".join(hp_rows)))

# %% [markdown]
# ## Reward along the sequence, per tag
#
# Mean reward per step in bins along the sequence, for the steps of each tag (tag 7 left out). Learners (tags 4
# and 5) should improve as they see more of their task, the oracles stay flat, and random actions (tag 6) stay
# low. The noisy and mixed behaviours make tags 2, 3 and 6 appear at all positions.

# %%
centres, curves = synthesis.reward_curves(data, cfg.curve_bins, by="tag")
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for name, vals in curves.items():
    axes[0].plot(centres, vals, marker=".", label=name)
axes[0].set_xlabel("position in the sequence")
axes[0].set_ylabel("mean reward per step")
axes[0].set_title("per tag")
axes[0].legend(fontsize=7)
centres_b, curves_b = synthesis.reward_curves(data, cfg.curve_bins, by="behaviour")
for name in ("model_based", "q_learning", "oracle_0.994", "noisy_oracle_0.994", "drift_random"):
    if name in curves_b:
        axes[1].plot(centres_b, curves_b[name], marker=".", label=name)
axes[1].set_xlabel("position in the sequence")
axes[1].set_title("per behaviour (all of its steps)")
axes[1].legend(fontsize=7)
fig.tight_layout()
fig.savefig(out_dir / "reward_curves.png", dpi=100)
plt.show()
quarter = max(1, len(centres) // 4)
summary = {name: [float(np.nanmean(v[:quarter])) if np.isfinite(v[:quarter]).any() else float("nan"),
                  float(np.nanmean(v[-quarter:])) if np.isfinite(v[-quarter:]).any() else float("nan")]
           for name, v in curves.items()}
display(Markdown("| tag | first quarter | last quarter |\n|---|---|---|\n"
                 + "\n".join(f"| {k} | {a:.4f} | {b:.4f} |" for k, (a, b) in summary.items())))

# %% [markdown]
# ## The training loader
#
# `SequenceDataset` yields `[B, T_chunk]` chunks; each DDP rank reads the shards `i` with
# `i % world_size == rank`, and the epoch seed shuffles shards and sequences reproducibly. Every file's
# sha256 is checked when it is opened.

# %%
ds = SequenceDataset(data_root / first, batch_size=min(cfg.loader_batch, dcfg.sequences_per_shard),
                     chunk_len=min(cfg.loader_chunk, dcfg.seq_len))
batch = next(iter(ds))
print(f"{len(ds)} batches per epoch; one batch:")
for k, v in batch.items():
    print(f"  {k:11s}", tuple(v.shape) if hasattr(v, "shape") else v, getattr(v, "dtype", ""))
for rank in range(2):
    print(f"rank {rank} of 2 reads shards", SequenceDataset(data_root / first, 1, 1, rank=rank, world_size=2,
                                                             verify=False).shard_indices)

# %% [markdown]
# ## Cost of the full datasets
#
# From the rate measured above (all workers of this machine), the time and disk the datasets of this
# parameter file take; `bench/bench_synthesis.py` compares the per-core rate with a reference-style loop and
# projects D_Large.

# %%
bytes_per_step = 1 + 1 + 1 + 4 + 1 + 1  # obs, tag, action, reward (float32), label, behaviour
rows = []
for name, t in timings.items():
    d = cfg.datasets[name]
    per_core = t["steps_per_s"] / t["workers"]
    rows.append(f"| {name} | {t['steps']:,} | {per_core:,.0f} | {t['steps'] / per_core / 3600:.2f} | "
                f"{t['steps'] * bytes_per_step / 1e9:.2f} |")
d_large = 6e9
rate = np.mean([t["steps_per_s"] / t["workers"] for t in timings.values()])
rows.append(f"| D_Large (projected, ns=16 rate) | {d_large:,.0f} | {rate:,.0f} | {d_large / rate / 3600:,.0f} | "
            f"{d_large * bytes_per_step / 1e9:.0f} |")
display(Markdown("| dataset | steps | steps/s per core | core-hours | disk GB |\n|---|---|---|---|---|\n"
                 + "\n".join(rows)))
