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
# # 04 · Evaluation: in-context RL against the baselines
#
# The paper evaluates OmniRL on tasks it never saw in training (section 5, Algorithm 4): unseen AnyMDP tasks,
# Garnet, the tabular Gymnasium classics, a discretised Pendulum and DarkRoom. A run starts from an **empty
# context**; the model acts with tag 7 ("unknown behaviour") at every step, sampling from
# `softmax(logits / 0.5)`, and keeps its memory over all episodes of the task. Its episodes are scored as
#
# $$\text{score} = \frac{R - R_\text{random}}{R_\text{oracle} - R_\text{random}},$$
#
# with exact reference returns wherever the dynamics are known. This notebook
#
# 1. builds the test suites and shows their reference returns,
# 2. runs the baselines (uniform random, oracle, TQL-UCB with a small grid of exploration bonuses) and, when a
#    checkpoint is configured, OmniRL online and with demonstrations (offline RL / imitation),
# 3. writes a Table-1 style report next to the paper's numbers, and learning curves per suite,
# 4. measures in-context learning (score along the run from an empty memory, the gain) and long contexts,
# 5. ends with what this run shows: each claim with its number, interval and verdict.
#
# All logic lives in `omnirl_core.evaluation` (suites, agents, runs, report, in-context gain) and
# `omnirl_core.views` (figures); cells here only call it.

# %% tags=["parameters"]
config_path = "params/quick/04_evaluation.yaml"
run_dir = "outputs/quick"

# %%
import json
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from omnirl_core import evaluation as ev
from omnirl_core import views
from omnirl_core.evaluation import incontext as ic
from omnirl_core.evaluation import suites as su
from omnirl_core.workbook import notebook_config, repo_path, run_artefact
from omnirl_core.workbook.devices import slots, spreads
from omnirl_core.workbook.figures import no_figure, show_figure

cfg = notebook_config("04_evaluation", globals())  # the file, then what papermill injected; saved in run_dir
out_dir = repo_path(run_dir) / "04_evaluation"
out_dir.mkdir(parents=True, exist_ok=True)
cfg

# %% [markdown]
# ## 1. The test suites
#
# Test tasks never share a seed with training: training draws task seeds from `[0, 2**32)`, test tasks use
# seeds from `2**32` upwards. Gymnasium tasks with fewer than 5 actions map action `a` to `a mod n`, and their
# rewards are reshaped as in the paper (e.g. FrozenLake non-slippery: +1 goal, -1 hole, -0.05 per step).
# For Pendulum the references are Monte-Carlo estimates: the oracle plans on a tabular model estimated from many
# sampled transitions; its R_oracle is its measured return in the real system.

# %%
t0 = time.time()
suite_objs = {name: ev.config_suite(cfg, name) for name in cfg.suites}
lines = ["| suite | runs | obs ids | actions | reference | mean R_oracle | mean R_random | skipped |", "|" + "---|" * 8]
for name, s in suite_objs.items():
    lines.append(f"| {name} | {s.num_envs} | {s.n_obs} | {s.na} | {s.reference} | {s.r_oracle.mean():.3f} | "
                 f"{s.r_random.mean():.3f} | {int((~s.valid).sum())} |")
display(Markdown("\n".join(lines)))
print(f"suites built in {time.time() - t0:.1f} s")

# %% [markdown]
# ## 2. Runs
#
# Every agent runs `n_episodes` episodes on every task of a suite; all tasks of a suite advance together as one
# batch, each with its own random stream (a task's run does not depend on its batch). TQL-UCB is run with each
# bonus scale of the grid and the best is kept (tuned per task family, as in the paper); as in the paper it is
# scored on test episodes: after every `tql_eval_every` training episodes, `eval_episodes` episodes of its greedy
# policy (no exploration bonus) on a separate copy of the task, so its curve has one point per `tql_eval_every`
# episodes (`tql_scoring: training` scores its exploring episodes instead). OmniRL runs when
# `checkpoint` is set: a path relative to the run folder is the model notebook 03 trained there
# (`03_training/run/model.safetensors`, both profiles); `shipped` is the model shipped in `models/` that covers
# the suite (OmniRL-tiny: the bandit model on `anymdp_1`, the AnyMDP model on suites with up to 16 observation
# ids), at the temperature chosen for it on validation tasks; `also_shipped: true` runs the shipped models beside
# the checkpoint; `post_checkpoint` (the paper profile: `03_training/post/model.safetensors`) adds rows for notebook
# 03's model after its long-context post-training, since Table 1's 10,000 episodes (1.1M-5M steps) lie far past the
# 80K steps where the paper saw the loss rise and post-trained on D_Long. With `devices` (the paper profile: 8 GPUs)
# or `cpu_processes` above 1 (the quick profile: 2, one per core) the suites run in parallel processes, one per GPU
# or core; the results are those of one process.

# %%
model = None  # checkpoint "shipped": evaluate() picks, per suite, the shipped model covering it
if cfg.checkpoint and cfg.checkpoint != ev.SHIPPED and "omnirl" in cfg.agents:
    # notebook 03's model of this run folder by default (03_training/run/model.safetensors)
    ckpt = run_artefact(repo_path(run_dir), cfg.checkpoint, key="checkpoint", made_by="03_training")
    model = ev.load_model(ckpt, device=cfg.device)
    print(f"OmniRL loaded from {ckpt}: {model.cfg.backbone}, {model.cfg.num_layers} x {model.cfg.hidden_size}")
if cfg.post_checkpoint and "omnirl" in cfg.agents:  # notebook 03's post-trained model, rows "OmniRL (post-trained)"
    cfg.post_checkpoint = str(run_artefact(repo_path(run_dir), cfg.post_checkpoint, key="post_checkpoint",
                                           made_by="03_training"))

t0 = time.time()
spread = spreads(cfg.devices, cfg.cpu_processes)  # the GPUs of the node, or each core of a small machine
if spread:  # one suite per GPU (or core) at a time, in parallel processes that load the checkpoint
    if model is not None:
        cfg.checkpoint = str(ckpt)
    results = ev.evaluate_on_devices(cfg, out_dir)
else:
    results = ev.evaluate(cfg, model=model)
print(f"evaluation took {time.time() - t0:.1f} s")

# %% [markdown]
# ## 3. Table 1
#
# For each suite and agent: the best average score within the episode budget (the mean over windows of `smooth`
# evaluated episodes, or the test points of `smooth_tested` training episodes, full windows only), the final score
# (the last window), each with a 95% bootstrap interval over tasks, and the episodes and steps (mean over runs) up
# to the first episode of the first window that reaches 99% of that best (no floor at the window's length).
# Random and oracle are the calibration rows: they should read about 0 and 1 (a maximum over a noisy curve still
# sits a little above its level). On bandits every agent has a second row, `reward: expected`: the same runs
# scored by the expected reward of each pulled arm (the pseudo-reward), free of the reward noise
# (`omnirl_core.evaluation.expected`). The paper's columns give its Table 1 for the same method (OmniRL,
# TQL-UCB, PPO); our budgets are far smaller in the quick profile, so the numbers are not comparable there, only
# the mechanics.

# %%
paths = ev.write_report(results, out_dir, smooth=cfg.smooth, smooth_tested=cfg.smooth_tested)
display(Markdown(paths["md"].read_text()))
print("written:", *[str(p) for p in paths.values()], sep="\n  ")

# %% [markdown]
# ## 4. Learning curves
#
# Mean normalised score along the run, against episodes and against environment steps, both on log axes (the
# baselines run `baseline_episodes`, OmniRL `n_episodes`: in the quick profile a hundredfold less), in log-spaced
# bins of episodes with 95% bands over the runs; one colour per agent in every figure. Random sits at 0 and the
# oracle at 1 by construction (the oracle is the dashed black line, drawn on top); a learner climbs from 0 towards
# 1. TQL-UCB's points are its greedy test episodes; with fewer than three points a curve is drawn as markers.
# Bandits are drawn from their expected-reward rows.

# %%
for name, fig in views.plot_curves(results).items():
    if isinstance(fig, str):  # a suite whose curves are one or two points (the quick profile's Pendulum)
        no_figure(f"{name}: {fig}")
    else:
        show_figure(fig, out_dir / f"curves_{name}.png")

# %% [markdown]
# ## 5. Is the learning in context?
#
# The best score says how good an agent gets; whether it *learns* shows in how its score changes along a run
# that starts from an empty memory, on tasks it never saw, with no gradient step. The workbook's one in-context
# measure (`omnirl_core.evaluation.incontext.online_gain`, also used by notebook 05 and the long-context panel):
# every model runs `incontext.steps` steps on each of `incontext.n_tasks` unseen tasks of each suite in
# `incontext.suites`; each finished episode's score goes to the log-spaced bin of steps in which it ended (octaves,
# the first 1/32 of the run alone); the **gain** is the last bin minus the first, per task, with a 95% interval
# over tasks. Bandits are scored by the expected reward of the pulled arm (a pull's sampled reward is as noisy as
# the gap between the arms). TQL-UCB runs beside it at the setting Table 1 chose for the suite, scored on its own
# exploring steps here, as OmniRL is. A gain whose interval lies above 0 is in-context learning that is really
# there; in the quick profile 03's model is a bandit model, so the bandit suite is where it is measured.

# %%
ic_gains = ev.incontext_panel(cfg, model, results) if cfg.incontext.enabled else {}
(out_dir / "incontext.json").write_text(json.dumps(
    {s: {a: {k: v for k, v in g.items() if k != "per_task"} for a, g in rows.items()} for s, rows in ic_gains.items()},
    indent=1))
if ic_gains:
    lines = ["| suite | agent | tasks | first bin | last bin | gain, last - first [95% CI] |",
             "|---|---|---|---|---|---|"]
    for suite_name, rows in ic_gains.items():
        for agent, g in rows.items():
            q1, qk, d = g["early"], g["late"], g["gain"]
            lines.append(f"| {suite_name} | {agent} | {g['n_tasks']} | {q1[0]:.3f} ({ic.bin_label(g, 'early')}) | "
                         f"{qk[0]:.3f} ({ic.bin_label(g, 'late')}) | {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}] |")
    display(Markdown("\n".join(lines)))

# %%
if ic_gains:
    fig, axes = plt.subplots(1, len(ic_gains), figsize=(8.5 * len(ic_gains), 3.6), squeeze=False,
                             layout="constrained")
    for ax, (suite_name, rows) in zip(axes[0], ic_gains.items()):
        first = next(iter(rows.values()))
        views.plot_gain(rows, title=f"{suite_name}: {first['n_tasks']} unseen tasks, {first['steps']} steps each, "
                        f"{first['reward']} reward", ax=ax)
    show_figure(fig, out_dir / "incontext_gain.png")
else:
    no_figure("the in-context measure is off in these parameters (incontext.enabled: false)")

# %% [markdown]
# ## 6. Very long contexts
#
# The paper trained on sequences of 12K steps, found the loss on a 1M-step context rising beyond about 80K steps,
# and post-trained on D_Long (512K-step sequences) for it. With `long_context.enabled`, each model of
# `long_context.checkpoints` (by default notebook 03's model before and after its post-training stage) is measured
# along one context of `long_context.steps` steps (paper profile: 1M; quick: 16K pulls on each of
# `long_context.n_tasks` bandits): the label loss on DPD sequences synthesised for the purpose, and the score and
# the entropy of the policy in online runs from an empty memory, all in the log-spaced bins of section 5's measure
# (`omnirl_core.evaluation.long_context`). On bandits the score is the expected reward of the pulled arm; the
# figure says on the plot when its intervals are still too wide to read. A model that holds up keeps its loss low
# and its score high to the right end; its entropy falls as it stops exploring.

# %%
from omnirl_core.evaluation import long_context as lcx  # noqa: E402
from omnirl_core.workbook import MissingArtefact  # noqa: E402

lc = cfg.long_context
lc_report = None
if lc.enabled:
    lc_paths = {}
    for path in lc.checkpoints:
        try:
            lc_paths[path] = run_artefact(repo_path(run_dir), path, key="long_context.checkpoints",
                                          made_by="03_training")
        except MissingArtefact as exc:
            print(f"skipped: {exc}")
    t0 = time.time()
    if spread and len(lc_paths) > 1:  # one model per GPU (or core), as the suites above
        lc_report = lcx.long_context_spread(lc, lc_paths, out_dir / "long_context", temperature=cfg.temperature,
                                            seed=cfg.seed, device=cfg.device,
                                            slots=slots(cfg.devices, cfg.cpu_processes),
                                            torch_threads=cfg.torch_threads)
    else:
        lc_models = {path: ev.load_model(found, device=cfg.device) for path, found in lc_paths.items()}
        lc_report = lcx.long_context_report(lc, lc_models, su.build_suite(lc.suite, lc.n_tasks),
                                            temperature=cfg.temperature, seed=cfg.seed, device=cfg.device,
                                            progress=cfg.progress)
    print(f"long contexts measured in {time.time() - t0:.1f} s")
    _ = (out_dir / "long_context.json").write_text(json.dumps(lc_report, indent=1))
    lines = [f"| model | loss, first bin -> last | score ({lc_report['reward']} reward), first bin -> last "
             "[95% CI] | gain, last - first [95% CI] | entropy, first bin -> last |", "|---|---|---|---|---|"]
    for name, c in lc_report["models"].items():
        lo, sc, en, g = c["loss"]["loss"], c["score"], c["entropy"]["entropy"], c["gain"]
        lines.append(f"| `{name}` | {lo[0]:.3f} -> {lo[-1]:.3f} | {sc['score'][0]:.3f} -> {sc['score'][-1]:.3f} "
                     f"[{sc['low'][-1]:+.2f}, {sc['high'][-1]:+.2f}] | {g[0]:+.3f} [{g[1]:+.3f}, {g[2]:+.3f}] | "
                     f"{en[0]:.3f} -> {en[-1]:.3f} |")
    display(Markdown("\n".join(lines)))

# %%
if lc_report is not None:
    show_figure(views.plot_long_context(lc_report), out_dir / "long_context.png")
else:
    no_figure("long_context.enabled is false in these parameters")

# %% [markdown]
# ## 7. What this run shows
#
# Each claim this notebook makes, with the number this run computed, its 95% interval over tasks, the rule that
# decides it and the verdict (also in `04_evaluation/claims.json`). Calibration: random's and the oracle's mean
# score over every task of the suites with exact references should sit near 0 and 1 (Pendulum's references are
# Monte-Carlo estimates and are left out of these two rows). In-context learning: section 5's gain above 0. Long
# contexts: the gain along the whole long run above 0, and whether post-training raised the score of the last bin
# (paired over the same tasks).

# %%
from omnirl_core.evaluation.incontext import mean_ci  # noqa: E402
from omnirl_core.workbook.claims import ClaimSheet  # noqa: E402

sheet = ClaimSheet(out_dir)
for agent, target in (("random", 0.0), ("oracle", 1.0)):
    per_task = np.concatenate([np.nanmean(r.scores[r.valid], axis=1) for r in results
                               if r.agent == agent and r.info.get("reward") != "expected"
                               and not su.is_simulated(r.suite)])
    m, low, high = mean_ci(per_task[np.isfinite(per_task)])
    sheet.within(f"calibration_{agent}", f"{agent} scores {target:g} on average (suites with exact references)",
                 m, (low, high), target - 0.1, target + 0.1, measure=f"mean score over {per_task.size} runs")
for suite_name, rows in ic_gains.items():
    for agent, g in rows.items():
        if agent.startswith("TQL"):
            continue
        d = g["gain"]
        sheet.above(f"incontext_{suite_name}_{agent}", f"{agent} learns in context on unseen {suite_name} tasks",
                    d[0], (d[1], d[2]), 0.0,
                    measure=f"gain, {ic.bin_label(g, 'late')} minus {ic.bin_label(g, 'early')}, {g['n_tasks']} tasks")
if lc_report is not None:
    names = list(lc_report["models"])
    for name in names:
        g = lc_report["models"][name]["gain"]
        sheet.above(f"long_gain_{name}", f"`{name}` keeps learning over {lc_report['steps']:,}-step contexts",
                    g[0], (g[1], g[2]), 0.0, measure=f"gain, last bin - first, {lc_report['n_tasks']} tasks")
    if len(names) == 2:
        a, b = (np.asarray(lc_report["models"][n]["score"]["last_per_task"], dtype=float) for n in names)
        keep = np.isfinite(a) & np.isfinite(b)
        m, low, high = mean_ci(b[keep] - a[keep])
        sheet.above("post_training", "post-training on long sequences raises the score at the end of the context",
                    m, (low, high), 0.0, measure=f"last bin, `{names[1]}` - `{names[0]}`, {int(keep.sum())} tasks",
                    note="the paper's remedy for the loss rising past the training length")
display(Markdown("### What this run shows\n\n" + sheet.markdown()))
