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
# # 05 · Ablations: what makes in-context RL appear
#
# The paper varies one ingredient at a time and measures how well the trained model adapts to **unseen** tasks
# in context. This notebook runs those studies at a chosen scale:
#
# | study | variants | the lever |
# |---|---|---|
# | `task_count` | 100 / 1K / unlimited distinct training tasks (paper: also 10K, 128K) | task diversity |
# | `tags` | DPD with behaviour tags vs without | prior information on who acted |
# | `data_strategy` | DPD vs AD vs AD-ε vs DPT | which behaviour acts, which action is the label |
# | `backbone` | RWKV-7, Gated DeltaNet, GSA, Mamba2 | the recurrent memory |
# | `garnet` | trained on AnyMDP vs on Garnet, tested on AnyMDP (more: section 5) | the task distribution |
#
# Every variant is a few overrides of one base dataset and one base training run (`params/*/05_ablations.yaml`);
# its dataset is synthesised (shared with variants that have the same data), its model trained, then run online
# on unseen tasks from an empty memory with tag 7. The measure is the workbook's one in-context measure (notebook
# 04, section 5): the score along the run in log-spaced bins of steps (octaves, the first 1/32 of the run alone;
# bandits scored by the expected reward of the pulled arm), and the **in-context gain**, last bin minus first,
# with a 95% interval over tasks. Section 5 puts every variant
# on further suites too (`also_suites`), one column per suite as in the paper's Table 1.
#
# The quick profile works on 5-armed bandits, where a 0.1M-parameter model learns in context within a few
# minutes of CPU training; its numbers show the mechanics, and whether each effect's direction is resolved at a
# tiny scale and from one training seed, not the paper's magnitudes (the three-seed table of
# docs/results/ablations.md pools them). The quick workbook runs the studies listed in `run`; all of them:
# `python -m omnirl_core.studies params/quick/05_ablations.yaml --all --out outputs/ablations_quick`.
# All logic lives in `omnirl_core.studies` (`ablations`, `cross_suite`); cells here only call it.

# %% tags=["parameters"]
config_path = "params/quick/05_ablations.yaml"
run_dir = "outputs/quick"

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from omnirl_core.evaluation import load_model
from omnirl_core.studies import ablations as ab
from omnirl_core.studies import cross_suite as xs
from omnirl_core.studies.context_loss import plot_context_loss
from omnirl_core.workbook import notebook_config, repo_path, run_artefact
from omnirl_core.workbook.devices import spreads
from omnirl_core.workbook.figures import show_figure

cfg = notebook_config("05_ablations", globals())  # the file, then what papermill injected; saved in run_dir
out_dir = repo_path(run_dir) / "05_ablations"
reference_ckpt = cfg.reference_checkpoint and run_artefact(  # notebook 03's model: looked up before any training
    repo_path(run_dir), cfg.reference_checkpoint, key="reference_checkpoint", made_by="03_training")
out_dir.mkdir(parents=True, exist_ok=True)
chosen = cfg.studies_to_run  # the file's `run` list (every study when empty)
lines = ["| study | variants | runs now | the paper's finding |", "|---|---|---|---|"]
for name, study in cfg.studies.items():
    lines.append(f"| {name} | {', '.join(study.variants)} | {'yes' if name in chosen else 'no'} | {study.finding} |")
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## 1. What each variant changes
#
# The overrides of every variant against the base configuration (dotted keys into the dataset and the training
# run). The whole configuration of each run is also written next to its model (`config.yaml`).

# %%
lines = ["| study | variant | overrides |", "|---|---|---|"]
for name in chosen:
    for variant, over in cfg.studies[name].variants.items():
        text = ", ".join(f"`{k}` = {v}" for k, v in over.items()) or "(the base)"
        lines.append(f"| {name} | {variant} | {text} |")
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## 2. Synthesise, train, measure
#
# Finished work is reused: a variant whose `gain.json` matches its configuration is read back, an interrupted
# training run resumes from its last checkpoint, and a dataset shared by several variants is built once. With
# `devices` set (the paper profile: the node's 8 GPUs) the variants run in parallel processes, one per GPU; on a
# small machine `cpu_processes` (the quick profile: 2) runs them one per core.
# With `seeds: N` every variant is trained N times (seed s adds s to its training and dataset seeds; seed 0 is
# the single run) and its row pools the seeds: means with 95% intervals over seeds and tasks, each seed's own
# gain listed beside them. `results_dir` keeps each finished (variant, seed) as small files that outlive the run
# folder and are reused from there.

# %%
t0 = time.time()
if spreads(cfg.devices, cfg.cpu_processes):  # one variant per GPU (the 8-GPU node) or per core at a time
    ab.spread_variants(cfg, repo_path(run_dir) / "05_ablations.config.yaml", out_dir, chosen)  # what runs here
results = ab.run_studies(cfg, out_dir, chosen)  # after spreading: every variant is read back from its folder
tql = {name: ab.tql_reference(cfg, name) for name in results} if cfg.tql else {}
references: dict[str, dict] = {name: {} for name in results}
if reference_ckpt:  # notebook 03's model of this run folder, on each study's test tasks
    reference_model = load_model(reference_ckpt)
    for name in results:
        try:
            references[name]["OmniRL (notebook 03's model)"] = ab.model_reference(cfg, name, reference_model)
        except ValueError as exc:
            print(f"{name}: notebook 03's model not measured ({exc})")
print(f"studies {', '.join(chosen)} took {time.time() - t0:.0f} s")

# %% [markdown]
# ## 3. In-context gain curves
#
# Mean normalised score in each log-spaced bin of a run on unseen tasks (the study's test suite and steps; 95%
# bands over the tasks), one line per variant, its gain and interval in the legend; TQL-UCB (tuned c) and notebook
# 03's model (`reference_checkpoint`) on the
# same tasks are the reference lines. A model that learns in context rises from left to right.

# %%
fig, axes = plt.subplots(1, len(results), figsize=(8.5 * len(results), 3.6), squeeze=False, layout="constrained")
for ax, (name, variants) in zip(axes[0], results.items()):
    ab.plot_study(name, variants, tql.get(name), ax=ax, models=references.get(name))
    suite_name, steps = xs.eval_settings(cfg, name)
    ax.set_title(f"{name}: {cfg.eval_tasks} unseen {suite_name} tasks, {steps} steps each", fontsize=10)
show_figure(fig, out_dir / "gain_curves.png")

# %% [markdown]
# The paper also compares backbones and data strategies by their loss against log(context length). Every variant
# of a study is read on the same `loss_sequences` DPD sequences (oracle labels, unseen tasks of the study's test
# size and length), so its curves are comparable whatever data each variant trained on: a model that learns in
# context has a falling line.

# %%
fig, axes = plt.subplots(1, len(results), figsize=(8.5 * len(results), 3.4), squeeze=False, layout="constrained")
for ax, (name, variants) in zip(axes[0], results.items()):
    plot_context_loss(name, variants, ax=ax)
show_figure(fig, out_dir / "context_loss.png")

# %% [markdown]
# ## 4. Summary beside the paper
#
# The quick profile's budgets are thousands of times smaller than the paper's (and on bandits, not AnyMDP(16,5)),
# so compare directions, not magnitudes.

# %%
rows = ab.summary_rows(cfg, results)
table = ab.markdown_summary(rows, tql, references)
_ = (out_dir / "summary.md").write_text(table + "\n")
display(Markdown(table))

# %% [markdown]
# ## 5. The variants across suites (the paper's Table 1)
#
# The paper reports AD, AD-ε, DPT and OmniRL without tags beside OmniRL on every test suite, and the model
# trained on Garnet on AnyMDP and on Pendulum. Here every variant is also run, with the same online protocol, on
# the suites of `also_suites` (a study's own list, else the file's): one row per trained model (DPD, shared by
# `tags` and `data_strategy`, is one row), one column per suite, the score in the last log-spaced bin and the
# in-context gain with 95% intervals; studies with the same `table` title share a table (the parameter files put
# `tags` and `data_strategy` in one). A model with fewer observation ids (`ns_max`) than a suite is skipped
# there, with the reason below the table. The paper's best scores within 10,000 episodes, another measure than a
# last bin, follow the score table for scale only.

# %%
parts, idle = [], []
for title, names in xs.table_groups(cfg).items():  # the studies' `table` titles: one table per title
    text = xs.suite_table(cfg, results, names)
    if text:
        parts.append(f"### {title}\n\n{text}")
    else:
        idle.append(f"{title} ({', '.join(names)})")
if idle:
    parts.append("Not run here (add them to `run`): " + "; ".join(idle) + ".")
report = "\n\n".join(parts)
_ = (out_dir / "table1_variants.md").write_text(report + "\n")
display(Markdown(report))

# %% [markdown]
# ## 6. What this run shows
#
# Each claim with the number this run computed, its 95% interval, the rule and the verdict (also in
# `05_ablations/claims.json`): every trained variant and notebook 03's model learn in context (gain above 0), and
# within each study the first variant (the paper's choice) gains more than each other variant, paired over the same
# test tasks. One training seed decides nothing about a difference between variants that the seeds' spread can
# reverse: `seeds: 3` (the table of docs/results/ablations.md) pools seeds and tasks. At the quick budget a
# variant's in-context learning appears as a sharp drop of its training loss from about 1.6 nats (uniform over 5
# arms) at an iteration that varies with the seed, so a variant whose final loss in the table above is still near
# 1.6 has not learnt yet, and one seed can read as a large difference between variants.

# %%
from omnirl_core.evaluation.incontext import mean_ci  # noqa: E402
from omnirl_core.workbook.claims import ClaimSheet  # noqa: E402

sheet = ClaimSheet(out_dir)
for name, variants in results.items():
    for r in variants:
        g = r.gain["gain"]
        sheet.above(f"{name}_{r.variant}", f"`{r.variant}` ({name}) learns in context", g[0], (g[1], g[2]), 0.0,
                    measure=f"gain, last bin - first, {r.gain['n_tasks']} tasks, {r.gain.get('n_seeds', 1)} seed(s)")
    base = variants[0]
    for other in variants[1:]:
        a, b = (np.asarray(v.gain.get("per_task", []), dtype=float) for v in (base, other))
        if a.ndim == 2 and a.shape == b.shape:  # one seed: tasks paired
            d = (a[:, -1] - a[:, 0]) - (b[:, -1] - b[:, 0])
            m, low, high = mean_ci(d[np.isfinite(d)])
        else:  # pooled seeds keep no per-task table: the difference of the pooled gains, undecided
            m, low, high = base.gain["gain"][0] - other.gain["gain"][0], float("nan"), float("nan")
        sheet.above(f"{name}_{base.variant}_vs_{other.variant}",
                    f"`{base.variant}` gains more in context than `{other.variant}`", m, (low, high), 0.0,
                    measure=f"difference of gains, paired over {len(a)} tasks" if a.ndim == 2 and a.shape == b.shape
                    else "difference of the pooled gains", note=f"the paper: {cfg.studies[name].finding}"
                    + ("; one training seed per variant: the interval covers the test tasks, not the spread between "
                       "training runs" if base.gain.get("n_seeds", 1) == 1 else ""))
for name, refs in references.items():
    for label, g in refs.items():
        d = g["gain"]
        sheet.above(f"{name}_reference", f"{label} learns in context on {name}'s test tasks", d[0], (d[1], d[2]),
                    0.0, measure=f"gain, last bin - first, {g['n_tasks']} tasks")
display(Markdown("### What this run shows\n\n" + sheet.markdown()))
