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
#   probability 0.2 at each episode end (the paper's mixture; a dataset of the parameter file may set its own
#   weights, switching and schedules, as the quick profile's bandit datasets do: their file says how and why);
# - the **label** of every step is the action of the oracle (value iteration on the true task, gamma 0.994)
#   in the current state, whatever the behaviour did.
#
# Each step also carries a **tag** saying which kind of policy acted (0-3 oracles, 4 model-based, 5 Q-learning,
# 6 random, 7 unknown); tags of whole sequences and of single episodes are masked to 7 (15% each by default), so
# the model learns to act with and without that prior. After every episode one **boundary step** is stored
# (the final state, action `na`, reward 0, tag 7, label masked out of the loss) in place of a terminal token.
#
# This notebook synthesises the datasets of its parameter file with `omnirl_core.synthesis` (sharded,
# resumable, byte-identical whatever the worker count). It then looks at two of them: the first of the file
# (16-state AnyMDP tasks in the quick profile) and the one notebook 03 of the same parameter folder trains on
# (its `data.path`; 5-armed bandits in the quick profile): a few sequences, the tag and masking rates, the
# learners' hyperparameters, and the reward along the sequence per tag. It opens the training loader
# `omnirl_core.synthesis.reader`, estimates the cost of the paper's D_Large, and ends with a table of what this
# run shows.

# %% tags=["parameters"]
config_path = "params/quick/02_synthesis.yaml"
run_dir = "outputs/quick"

# %%
import json
import time
from pathlib import Path

import numpy as np
import yaml
from IPython.display import Markdown, display

from omnirl_core import synthesis
from omnirl_core.evaluation.incontext import mean_ci
from omnirl_core.synthesis import SequenceDataset
from omnirl_core.synthesis.analysis import sequence_changes, sequence_differences
from omnirl_core.views.training import plot_reward_curves, plot_sequences
from omnirl_core.workbook import describe, notebook_config, repo_path
from omnirl_core.workbook.claims import HOLDS, NOT_SHOWN, ClaimSheet, decide
from omnirl_core.workbook.figures import show_figure

cfg = notebook_config("02_synthesis", globals())  # the file, then what papermill injected; saved in run_dir
out_dir = repo_path(run_dir) / "02_synthesis"
out_dir.mkdir(parents=True, exist_ok=True)
data_root = Path(cfg.data_dir) if Path(cfg.data_dir).is_absolute() else repo_path(run_dir) / cfg.data_dir
sheet = ClaimSheet(out_dir)  # the claims of this run, shown at the end and kept in 02_synthesis/claims.json
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
# this cell resumes an interrupted synthesis and skips the shards already on disk after checking them; the rate
# printed is that of the shards this run wrote (none on a re-run of a finished dataset).

# %%
timings = {}
for name, dcfg in cfg.datasets.items():
    on_disk = {d.name for d in (data_root / name).glob("shard_*")}
    t0 = time.perf_counter()
    man = synthesis.synthesize(dcfg, data_root / name, workers=cfg.workers, force=cfg.force)
    dt = time.perf_counter() - t0
    steps = dcfg.n_sequences * dcfg.seq_len
    written = sum(r["n_sequences"] for r in man["shards"] if r["dir"] not in on_disk) * dcfg.seq_len
    size = sum(f.stat().st_size for f in (data_root / name).rglob("*.npy"))
    timings[name] = {"steps": steps, "steps_written": written, "seconds": dt, "workers": cfg.workers,
                     "steps_per_s": written / dt if written else None}
    rate = (f"{written:,} steps written in {dt:.1f} s ({written / dt:,.0f} steps/s with {cfg.workers} workers, "
            f"engine {dcfg.engine})" if written else "all shards were on disk already (verified, kept): no rate")
    print(f"{name}: {man['n_shards']} shards, {steps:,} steps, {size / 1e6:.1f} MB; {rate}")
_ = (out_dir / "timings.json").write_text(json.dumps(timings, indent=1))

# %% [markdown]
# ## The datasets looked at
#
# The first dataset of the file, and the one notebook 03 of this parameter folder trains on (the `data.path` of
# its `03_training.yaml`); the same one twice is looked at once. Only their first four shards are loaded.

# %%
first = next(iter(cfg.datasets))
train_yaml = repo_path(config_path).with_name("03_training.yaml")
trained = None
if train_yaml.is_file():
    train_path = (yaml.safe_load(train_yaml.read_text()) or {}).get("data", {}).get("path")
    trained = Path(train_path).name if train_path and Path(train_path).name in cfg.datasets else None
looked_at = list(dict.fromkeys(n for n in (first, trained) if n))
role = {first: "the first dataset of the file"} | ({trained: "the dataset notebook 03 trains on"} if trained else {})
data = {name: synthesis.load_dataset_arrays(data_root / name, max_shards=4) for name in looked_at}
display(Markdown("\n".join(f"- `{n}`: {role[n]}; {data[n]['obs'].shape[0]} sequences of {data[n]['obs'].shape[1]:,}"
                           f" steps loaded, {cfg.datasets[n].ns} state(s), {cfg.datasets[n].na} actions"
                           for n in looked_at)))

# %% [markdown]
# ## A look at a few sequences
#
# Each block is one sequence, its first `show_steps` steps: the observation id (not drawn for bandits, which
# have a single state), the executed action (blue dots) with the label, the oracle's action, as a green dash
# (a dot on its dash: the behaviour acted like the oracle), the tag of every step as a coloured strip (the key
# is the legend on top), and the reward (boundary steps, whose reward is always 0, left out). Black dashed lines
# are behaviour switches; light grey lines episode ends. On a bandit every pull is an episode followed by a
# boundary step, so those lines are left out there, and the tag strip shows each pull's tag over its boundary step.

# %%
for name in looked_at:
    show_figure(plot_sequences(data[name], cfg.show_sequences, cfg.show_steps, title=f"{name} ({role[name]})"),
                out_dir / f"sequences_{name}.png")

# %% [markdown]
# ## Tags and masking
#
# About 15% of the sequences have every tag set to 7 (in the quick profile's bandit dataset 30%:
# `seq_mask_prob`), and in the rest about 15% of the episodes do; boundary steps add tag-7 steps with masked
# labels. The masked-label fraction is the share of steps that do not enter the loss.

# %%
tag_stats = {name: synthesis.tag_statistics(d) for name, d in data.items()}
display(Markdown("| quantity | " + " | ".join(looked_at) + " |\n|---|" + "---|" * len(looked_at) + "\n" + "\n".join(
    f"| {k} | " + " | ".join(f"{tag_stats[n][k]:.3f}" for n in looked_at) + " |" for k in tag_stats[first])))
_ = (out_dir / "tag_statistics.json").write_text(json.dumps(tag_stats, indent=1))

# %% [markdown]
# ## The learners' hyperparameters
#
# Each sequence draws the hyperparameters of its Q-learner and of its model-based learner once (stored per
# sequence as `learner_params`): with probability 0.5 the noise-free branch (c = 0.005, alpha = 0.01,
# gamma ~ U(0.90, 0.99)), else the noisy branch (c = 0.005 Exp(1), alpha = 0.01 Exp(1), gamma 0.99, a random-action
# probability starting at U(0.1, 0.5) that decays while the learner's behaviour acts).

# %%
col = {n: i for i, n in enumerate(synthesis.LEARNER_PARAMS)}
hp_rows = []
for name in looked_at:
    lp = data[name]["learner_params"]
    for learner, scale in (("q", "alpha"), ("mb", "c")):
        noisy = lp[:, col[f"{learner}_noisy"]] == 1
        for branch, m in (("noise-free", ~noisy), ("noisy", noisy)):
            if not m.any():
                continue
            g, x = lp[m, col[f"{learner}_gamma"]], lp[m, col[f"{learner}_{scale}"]]
            p0 = lp[m, col[f"{learner}_noise_start"]]
            hp_rows.append(f"| {name} | {learner} | {branch} | {m.mean():.2f} | {g.min():.3f} .. {g.max():.3f} | "
                           f"{scale} mean {x.mean():.4f} (min {x.min():.4f}, max {x.max():.4f}) | {p0.mean():.2f} |")
display(Markdown("| dataset | learner | branch | share | gamma | step size / bonus scale | mean initial noise |\n"
                 "|---|---|---|---|---|---|---|\n" + "\n".join(hp_rows)))

# %% [markdown]
# ## Reward along the sequence, per tag
#
# What to expect, and why. A learner (tags 4 model-based and 5 Q-learning) learns from every step of its
# sequence, so it should earn more per step late in the sequence than early. An oracle (tags 0-3) learns
# nothing: its reward per step depends only on the states it acts in, so within one sequence it should not
# drift much. Random actions (tag 6) should stay below the oracle's.
#
# The curves below pool all sequences, which mixes that with *which* sequences hold a tag's steps at a given
# position: the gamma-0 oracle, for one, acts only inside the model-based learner's mixture (`mb_oracle_0`), so
# its pooled curve can rise as that learner brings it to better states, and a behaviour switched in late shows up
# only late. The table and the claims therefore compare steps *of the same sequence*: for each sequence holding
# a tag's steps in both its first and its last quarter, the mean reward per step of the last quarter minus that
# of the first, with a 95% interval over those sequences (`sequence_changes`). At the quick scale (four shards)
# some of these intervals are wide, and the bandit data need not follow the 16-state pattern; the claims at the
# end say which hold in this run.

# %%
curves = {name: (*synthesis.reward_curves(d, cfg.curve_bins, by="tag"),
                 synthesis.reward_curves(d, cfg.curve_bins, by="behaviour")[1]) for name, d in data.items()}
show_figure(plot_reward_curves(curves), out_dir / "reward_curves.png")
change_rows = []
for name in looked_at:
    for tag in synthesis.TAG_NAMES[:7]:
        ch = sequence_changes(data[name], tag)
        m, lo, hi = mean_ci(ch) if ch.size else [float("nan")] * 3
        change_rows.append(f"| {name} | {tag} | {ch.size} | " + (f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}] |"
                                                              if ch.size > 1 else "too few sequences |"))
display(Markdown("| dataset | tag | sequences with its steps in both quarters | last - first quarter, reward per step "
                 "(mean [95% CI]) |\n|---|---|---|---|\n" + "\n".join(change_rows)))

# %% [markdown]
# The claims: per dataset looked at, the two learners improve along the sequence (the change above is
# positive), random actions earn less per step than the gamma-0.994 oracle in the same sequence (per sequence
# holding both, over the whole sequence), and the gamma-0.994 oracle's reward per step stays within
# ±0.1 of where it started (a tolerance chosen here: the data fix no natural one).


# %%
def claim(key, text, values, rule, measure, **limits):
    """Record a claim from per-sequence values (mean and t-based 95% interval), saying why when it does not hold."""
    m, lo, hi = mean_ci(values) if values.size else [float("nan")] * 3
    verdict = decide({"kind": rule, **limits}, lo, hi)
    note = "" if verdict == HOLDS else (
        f"not shown in this run: over {values.size} sequences the interval is too wide to decide"
        if verdict == NOT_SHOWN else f"contradicted in this run: over {values.size} sequences the whole interval lies "
        "on the other side")
    getattr(sheet, rule)(key, text, m, (lo, hi), measure=measure, note=note, **limits)


for name in looked_at:
    d, short = data[name], f"{name}:"
    for tag, who in (("model-based", "the model-based learner (tag 4)"), ("Q-learning", "the Q-learner (tag 5)")):
        claim(f"{name}_{tag}_improves", f"{short} {who} earns more per step in the last quarter of a sequence than "
              "in the first", sequence_changes(d, tag), "above", "reward per step, over sequences", threshold=0.0)
    claim(f"{name}_random_below_oracle", f"{short} random actions (tag 6) earn less per step than the "
          "gamma-0.994 oracle (tag 3) in the same sequence", sequence_differences(d, "random", "oracle g=0.994"),
          "below", "reward per step, over sequences", threshold=0.0)
    claim(f"{name}_oracle_flat", f"{short} the gamma-0.994 oracle (tag 3) earns the same per step late in a sequence "
          "as early (within ±0.1)", sequence_changes(d, "oracle g=0.994"), "within",
          "reward per step, over sequences", low=-0.1, high=0.1)

# %% [markdown]
# ## The training loader
#
# `SequenceDataset` yields `[B, T_chunk]` chunks; each DDP rank reads the shards `i` with
# `i % world_size == rank`, and the epoch seed shuffles shards and sequences reproducibly. Every file's
# sha256 is checked when it is opened. Below, the dataset notebook 03 trains on (or the first one).

# %%
loader_name = trained or first
loader_cfg = cfg.datasets[loader_name]
ds = SequenceDataset(data_root / loader_name, batch_size=min(cfg.loader_batch, loader_cfg.sequences_per_shard),
                     chunk_len=min(cfg.loader_chunk, loader_cfg.seq_len))
batch = next(iter(ds))
print(f"{loader_name}: {len(ds)} batches per epoch; one batch:")
for k, v in batch.items():
    print(f"  {k:11s}", tuple(v.shape) if hasattr(v, "shape") else v, getattr(v, "dtype", ""))
for rank in range(2):
    print(f"rank {rank} of 2 reads shards", SequenceDataset(data_root / loader_name, 1, 1, rank=rank, world_size=2,
                                                             verify=False).shard_indices)

# %% [markdown]
# ## Cost of the full datasets
#
# From the rates measured above (all workers of this machine, divided by their number), the core-hours and disk
# the datasets of this parameter file take, and a projection for the paper's D_Large (6B steps) from the rate of
# the 16-state datasets only: a bandit step costs far less than a 16-state one, so averaging the two would
# understate the cost. Even so the projection is a lower bound: D_Large's tasks have 16 to 128 states, and task
# sampling and the oracle's solve grow with the number of states, so a D_Large step costs more than a 16-state
# one (`bench/bench_synthesis.py` measures the rate at ns = 72, D_Large's mean; docs/reference/benchmarks.md
# shows its table).
# A synthesis of a few seconds also includes the workers' start-up and shares the machine with whatever else
# runs, so the rate varies from run to run. The projection is missing when this run wrote no 16-state shard (a
# re-run).

# %%
rows = []
for name, t in timings.items():
    per_core = t["steps_per_s"] / t["workers"] if t["steps_per_s"] else None
    hours = f"{t['steps'] / per_core / 3600:.2f}" if per_core else "not measured"
    rows.append(f"| {name} | {cfg.datasets[name].ns} | {t['steps']:,} | "
                f"{f'{per_core:,.0f}' if per_core else 'not measured'} | {hours} | "
                f"{synthesis.dataset_bytes(cfg.datasets[name]) / 1e9:.2f} |")
rates16 = [t["steps_per_s"] / t["workers"] for n, t in timings.items()
           if t["steps_per_s"] and cfg.datasets[n].ns == 16 and cfg.datasets[n].ns_max is None]
d_large, d_large_cfg = 6e9, synthesis.DatasetConfig(ns=16, ns_max=128)  # D_Large's 6B steps, ns up to 128
if rates16:
    rate = float(np.mean(rates16))
    rows.append(f"| D_Large at the 16-state rate (a lower bound) | 16-128 | {d_large:,.0f} | {rate:,.0f} | "
                f"{d_large / rate / 3600:,.1f} | {d_large * synthesis.step_bytes(d_large_cfg) / 1e9:.0f} |")
display(Markdown("| dataset | states | steps | steps/s per core | core-hours | disk GB |\n|---|---|---|---|---|---|\n"
                 + "\n".join(rows)))

# %% [markdown]
# ## What this run shows
#
# Each claim of this notebook with the number this run computed, its 95% interval (t-based, over sequences) and
# the rule that decides the verdict: *holds* when the whole interval is on the claimed side, *contradicted* when
# it is wholly on the other, *not shown* otherwise. The table is also written to `02_synthesis/claims.json`.

# %%
weak = [c for c in sheet.claims.values() if c.verdict != HOLDS]
display(Markdown("### What this run shows\n\n" + sheet.markdown() + "\n\n" + (
    f"{len(sheet.claims) - len(weak)} of {len(sheet.claims)} claims hold in this run. Not holding: "
    + "; ".join(f"*{c.claim}* ({c.verdict})" for c in weak) + "." if weak else "Every claim holds in this run.")))
