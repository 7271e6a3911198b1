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
# on unseen tasks from an empty memory with tag 7. The measure is the **in-context gain**: mean normalised score
# in the last quarter of the run minus the first, with a 95% interval over tasks. Section 5 puts every variant
# on further suites too (`also_suites`), one column per suite as in the paper's Table 1.
#
# The quick profile works on 5-armed bandits, where a 0.1M-parameter model learns in context within a minute of
# CPU training; its numbers show the mechanics and the direction of each effect at a tiny scale, not the
# paper's magnitudes. The quick workbook runs the studies listed in `run`; all of them:
# `python -m omnirl_core.studies params/quick/05_ablations.yaml --all --out outputs/ablations_quick`.
# All logic lives in `omnirl_core.studies` (`ablations`, `cross_suite`); cells here only call it.

# %% tags=["parameters"]
config_path = "params/quick/05_ablations.yaml"
run_dir = "outputs/quick"

# %%
import time

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from omnirl_core.evaluation import load_model
from omnirl_core.studies import ablations as ab
from omnirl_core.studies import cross_suite as xs
from omnirl_core.workbook import notebook_config, repo_path, run_artefact
from omnirl_core.workbook.devices import spreads

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
            references[name]["notebook 03's model"] = ab.model_reference(cfg, name, reference_model)
        except ValueError as exc:
            print(f"{name}: notebook 03's model not measured ({exc})")
print(f"studies {', '.join(chosen)} took {time.time() - t0:.0f} s")

# %% [markdown]
# ## 3. In-context gain curves
#
# Mean normalised score in each quarter of a run on unseen tasks (the study's test suite and steps; 95% intervals
# over the tasks), one line per variant; TQL-UCB (tuned c) and notebook 03's model (`reference_checkpoint`) on the
# same tasks are the reference lines. A model that learns in context rises from left to right.

# %%
fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.6), squeeze=False)
for ax, (name, variants) in zip(axes[0], results.items()):
    ab.plot_study(name, variants, tql.get(name), ax=ax, models=references.get(name))
fig.tight_layout()
fig.savefig(out_dir / "gain_curves.png", dpi=100)
plt.show()

# %% [markdown]
# ## 4. Summary beside the paper
#
# The quick profile's budgets are thousands of times smaller than the paper's (and on bandits, not AnyMDP(16,5)),
# so compare directions, not magnitudes.

# %%
rows = ab.summary_rows(cfg, results)
table = ab.markdown_summary(rows, tql, references)
(out_dir / "summary.md").write_text(table + "\n")
display(Markdown(table))

# %% [markdown]
# ## 5. The variants across suites (the paper's Table 1)
#
# The paper reports AD, AD-ε, DPT and OmniRL without tags beside OmniRL on every test suite, and the model
# trained on Garnet on AnyMDP and on Pendulum. Here every variant is also run, with the same online protocol, on
# the suites of `also_suites` (a study's own list, else the file's): one row per trained model (DPD, shared by
# `tags` and `data_strategy`, is one row), one column per suite, the last-quarter score and the in-context gain
# with 95% intervals. A model with fewer observation ids (`ns_max`) than a suite is skipped there, with the
# reason below the table. The paper's row is its best score within 10,000 episodes, not a last quarter.

# %%
parts = []
for title, names in (("Data strategies and tags", ("data_strategy", "tags")),
                     ("Trained on AnyMDP or on Garnet", ("garnet",))):
    text = xs.suite_table(cfg, results, names)
    parts.append(f"### {title}\n\n" + (text or f"(not run here: add {' / '.join(names)} to `run`)"))
report = "\n\n".join(parts)
(out_dir / "table1_variants.md").write_text(report + "\n")
display(Markdown(report))
