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
# 3. writes a Table-1 style report next to the paper's numbers, and learning curves per suite.
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
from IPython.display import Image, Markdown, display

from omnirl_core import evaluation as ev
from omnirl_core import views
from omnirl_core.evaluation import suites as su
from omnirl_core.workbook import notebook_config, repo_path, run_artefact
from omnirl_core.workbook.devices import slots, spreads

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
suite_objs = {
    name: su.build_suite(name, cfg.n_tasks, pendulum_samples=cfg.pendulum_samples,
                         pendulum_reference_episodes=cfg.pendulum_reference_episodes)
    for name in cfg.suites
}
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
# the checkpoint. With `devices` (the paper profile: 8 GPUs) or `cpu_processes` above 1 (the quick profile: 2, one
# per core) the suites run in parallel processes, one per GPU or core; the results are those of one process.

# %%
model = None  # checkpoint "shipped": evaluate() picks, per suite, the shipped model covering it
if cfg.checkpoint and cfg.checkpoint != ev.SHIPPED and "omnirl" in cfg.agents:
    # notebook 03's model of this run folder by default (03_training/run/model.safetensors)
    ckpt = run_artefact(repo_path(run_dir), cfg.checkpoint, key="checkpoint", made_by="03_training")
    model = ev.load_model(ckpt, device=cfg.device)
    print(f"OmniRL loaded from {ckpt}: {model.cfg.backbone}, {model.cfg.num_layers} x {model.cfg.hidden_size}")

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
# For each suite and agent: the best average score within the episode budget (trailing mean over `smooth`
# episodes, taken only where the window is full), the final score (the last window), each with a 95% bootstrap
# interval over tasks, and the episodes and steps (mean over runs) until the curve first reaches 99% of that best.
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
# Mean normalised score against episodes and against environment steps (per run), one line per agent. Random sits
# at 0 and the oracle at 1 by construction; a learner should climb from 0 towards 1.

# %%
figs = views.plot_curves(results, out_dir)
for name in figs:
    display(Image(filename=str(out_dir / f"curves_{name}.png")))

# %% [markdown]
# ## 5. Is the learning in context?
#
# The best score says how good an agent gets; whether it *learns* shows in how its score changes along a run.
# For every suite where OmniRL ran: the mean score in each quarter of the steps that every run reached, with 95%
# intervals over the runs, for OmniRL and TQL-UCB (`omnirl_core.evaluation.incontext`; TQL-UCB's points are its
# test episodes, OmniRL's its own episodes). A rising line with the
# interval of "last quarter - first quarter" above 0 is in-context learning that is really there.

# %%
from omnirl_core.evaluation import incontext as ic  # noqa: E402

online_models = ("OmniRL", "OmniRL-tiny (shipped)")  # online rows; offline and imitation start from demos
omnirl_suites = [r.suite for r in results if r.agent in online_models]
lines = ["| suite | agent | steps | Q1 | Q4 | Q4 - Q1 [95% CI] |", "|---|---|---|---|---|---|"]
gains: dict[str, dict] = {}
for r in results:
    if r.info.get("reward") == "expected":  # the bandits' expected-reward rows: Table 1 only
        continue
    if r.suite in omnirl_suites and (r.agent in online_models or r.agent.startswith("TQL")):
        try:
            g = ic.result_gain(r)
        except ValueError as exc:  # too few episodes for four segments (small budgets)
            print(f"{r.suite} / {r.agent}: gain not measured ({exc})")
            continue
        gains.setdefault(r.suite, {})[r.agent] = g
        d = g["gain"]
        lines.append(f"| {r.suite} | {r.agent} | {g['steps']} | {g['q1'][0]:.3f} | {g['q4'][0]:.3f} | "
                     f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}] |")
if gains:
    display(Markdown("\n".join(lines)))
    fig, axes = plt.subplots(1, len(gains), figsize=(5.5 * len(gains), 3.4), squeeze=False)
    for ax, (suite_name, summaries) in zip(axes[0], gains.items()):
        views.plot_gain(summaries, title=suite_name, ax=ax)
    fig.tight_layout()
    fig.savefig(out_dir / "incontext_gain.png", dpi=100)
    plt.show()
else:
    print("OmniRL did not run (no checkpoint, or none covering these suites)")

# %% [markdown]
# ## 6. Very long contexts
#
# The paper trained on sequences of 12K steps, found the loss on a 1M-step context rising beyond about 80K steps,
# and post-trained on D_Long (512K-step sequences) for it. With `long_context.enabled`, each model of
# `long_context.checkpoints` (by default notebook 03's model before and after its post-training stage) is measured
# along one context of `long_context.steps` steps (paper profile: 1M; quick: 16K pulls on each of
# `long_context.n_tasks` bandits): the label loss on DPD sequences synthesised for the purpose, and the score and
# the entropy of the policy in online runs from an empty memory, all in log-spaced bins of the position
# (`omnirl_core.evaluation.long_context`). On bandits the score is the expected reward of the pulled arm (the
# pseudo-reward; a pull's sampled reward is too noisy to read over a few tasks); the figure says so, and says on
# the plot when its intervals are still too wide to read. A model that holds up keeps its loss low and its score
# high to the right end; its entropy falls as it stops exploring.

# %%
from omnirl_core.evaluation import long_context as lcx  # noqa: E402
from omnirl_core.workbook import MissingArtefact  # noqa: E402

lc = cfg.long_context
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
    (out_dir / "long_context.json").write_text(json.dumps(lc_report, indent=1))
    lines = [f"| model | loss, first bin -> last | score ({lc_report['reward']} reward), first bin -> last "
             "[95% CI] | entropy, first bin -> last |", "|---|---|---|---|"]
    for name, c in lc_report["models"].items():
        lo, sc, en = c["loss"]["loss"], c["score"], c["entropy"]["entropy"]
        lines.append(f"| `{name}` | {lo[0]:.3f} -> {lo[-1]:.3f} | {sc['score'][0]:.3f} -> {sc['score'][-1]:.3f} "
                     f"[{sc['low'][-1]:+.2f}, {sc['high'][-1]:+.2f}] | {en[0]:.3f} -> {en[-1]:.3f} |")
    display(Markdown("\n".join(lines)))
    fig = views.plot_long_context(lc_report)
    fig.savefig(out_dir / "long_context.png", dpi=100)
    plt.show()
else:
    print("long_context.enabled is false in these parameters")

# %% [markdown]
# ## 7. Sanity checks
#
# The oracle's average score should be 1 and the random policy's 0 on every suite, up to sampling error (exact
# references) or the references' own Monte-Carlo error (Pendulum).

# %%
for r in results:
    if r.agent in ("oracle", "random") and r.info.get("reward") != "expected":
        s = r.scores[r.valid]
        s = s[~np.isnan(s)]
        print(f"{r.suite:22s} {r.agent:7s} mean score {s.mean():+.3f} +- {s.std(ddof=1) / np.sqrt(s.size):.3f}")
