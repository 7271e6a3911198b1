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
# # 01 · AnyMDP: random tabular worlds
#
# OmniRL is meta-trained on a very large number of randomly generated tabular tasks, the **AnyMDP**
# distribution (paper Algorithm 1). A task has `ns` states and `na` actions; its states carry a *hidden
# ranking*: the sampler builds the dynamics and rewards so that "higher" states are, broadly, worth more,
# while the agent only sees a random relabelling of the state ids. This notebook
#
# 1. walks through Algorithm 1 step by step on a sampled task,
# 2. shows a few example tasks as graphs and summary figures,
# 3. opens an interactive explorer (resample tasks, inspect transitions, play policies),
# 4. compares the statistics of our sampler with those of the reference sampler (Xenoverse 0.1.14.0),
# 5. compares exact oracle and random returns, and measures how long sampling takes,
#
# and ends with a table of what this run shows: each claim with the number it computed, a 95% interval and the
# verdict the interval gives.
#
# All logic lives in `omnirl_core.world` (tasks, samplers, oracle, statistics) and `omnirl_core.views` (figures,
# the explorer widget); cells here only call it.

# %% tags=["parameters"]
config_path = "params/quick/01_tasks.yaml"
run_dir = "outputs/quick"

# %%
import csv
import json
import time

import numpy as np
from IPython.display import Markdown, display

from omnirl_core import views
from omnirl_core.evaluation.incontext import mean_ci
from omnirl_core.views.explorer import POLICIES, TaskExplorer
from omnirl_core.views.task_figures import acceptance_entropy, least_agreeing_statistic
from omnirl_core.workbook import notebook_config, repo_path
from omnirl_core.workbook.claims import NOT_SHOWN, ClaimSheet, decide
from omnirl_core.workbook.figures import no_figure, show_figure
from omnirl_core.world import anymdp, oracle, stats

cfg = notebook_config("01_tasks", globals())  # the file, then what papermill injected; saved in run_dir
out_dir = repo_path(run_dir) / "01_tasks"
out_dir.mkdir(parents=True, exist_ok=True)
sheet = ClaimSheet(out_dir)  # the claims of this run, shown at the end and kept in 01_tasks/claims.json
cfg

# %% [markdown]
# ## 1. Algorithm 1, step by step
#
# ### Sizes and episode limits
# A task is either a **bandit** (`ns = 1`) or has `ns >= 8` states; the paper uses `na = 5` actions.
# Every task draws its own episode step limit: 1 for bandits, otherwise uniform in `[lo, hi)` with
# `lo = max(4 ns, 100)` and `hi = max(min(8 ns, 500), lo + 1)`. The limit is a real number; an episode is
# cut once its step count reaches it. Small tasks thus get at least 100 steps, large ones at most 500.

# %%
rng = np.random.default_rng(cfg.seed)
limits = {ns: [round(anymdp.episode_limit(ns, rng), 1) for _ in range(4)] for ns in (1, 8, 16, 32, 64, 128)}
display(Markdown("| ns | four draws of max_steps |\n|---|---|\n"
                 + "\n".join(f"| {ns} | {', '.join(map(str, v))} |" for ns, v in limits.items())))

# %% [markdown]
# ### Start and terminal states
# Inner state index order *is* the hidden ranking (0 = lowest). Episodes start in the bottom three states
# (0, 1, 2): three clipped normal weights give the start probabilities, so one to three of them are used.
# A per-task pitfall rate `p = max(U(-0.2, 0.4), 0)` (about a third of tasks have none) makes each state a
# terminal **pitfall** with probability `p` (never a start state), and with probability 0.3 the top state
# `ns - 1` is a terminal **goal**. Terminal states have all-zero transition rows: the episode ends on
# entering them.

# %%
ns0 = cfg.example_ns[0]
task = anymdp.sample_anymdp(ns0, cfg.na, seed=cfg.seed)
goal, pit = views.terminal_kinds(task)
print(task)
print("start distribution over states 0..2:", np.round(task.start_prob[:3], 3))
print("pitfalls:", np.flatnonzero(pit).tolist(), "| top state is a goal:", bool(goal.any()))
print("observation id of each inner state (what the agent sees):", task.state_mapping.tolist())

# %% [markdown]
# ### A banded average transition under the hidden ranking
# For every non-terminal state `s` the sampler first draws an action-free next-state distribution on a
# band `[lo, hi)` around `s`: it may fall back up to about `ns/2` ranks and leap forward up to about `ns/4`
# ranks (and `hi` is widened until at least two non-terminal states lie ahead). Band weights are clipped
# normals in `[0.1, 1]`; the self-loop weight is halved and the top state never loops on itself. The
# left panel below is this average matrix `mean_a P(s'|s,a)` in ranking order: the band around the
# diagonal is the structure the agent must discover through the random relabelling.
#
# ### Splitting the band among actions
# Each action of a state gets a random centre in the band and all actions of that state share one width
# `sigma = clip(Exp(1), 0.2, 1.6)`; an action's share of next state `j` is proportional to
# `exp(-(c_a - j)^2 / sigma^2)`. So different actions push towards different parts of the band, and
# `P(s'|s,a)` is that share times the average row, renormalised. The other panels show each action's
# matrix; the line plot shows the split for one state.

# %%
max_leap, max_back = anymdp.band_limits(ns0)
print(f"ns={ns0}: forward leap up to {max_leap} ranks, backward up to {max_back} ranks")
show_figure(views.plot_transition_matrices(task), out_dir / "algorithm_transition_matrices.png")
example_state = int(np.flatnonzero(~task.terminal)[len(np.flatnonzero(~task.terminal)) // 2])
_ = show_figure(views.plot_action_split(task, example_state), out_dir / "algorithm_action_split.png")

# %% [markdown]
# ### Rewards: four parts and terminal adjustments
# The mean reward `r(s, a, s')` is a sum of
# 1. **potential shaping** `phi(s) - phi(s')` with a random smooth (Fourier) potential, zero for half
#    of the tasks: it changes rewards without changing which policy is best;
# 2. a **position reward** on the next state, a random increasing profile along the ranking minus a
#    baseline, with Gaussian noise whose std depends on the state;
# 3. a sparse **state-action cost** (about 30% of `(s, a)` pairs, small);
# 4. a constant **step reward**: a small cost per step when there is a goal, a small survival bonus when
#    there are only pitfalls.
#
# Then **terminal adjustments**: entering the top state gets +1, and for up to five rounds value iteration
# checks that pitfalls are the worst places (otherwise their entry reward is lowered) and that the top of
# the ranking is worth more than the start (otherwise its entry reward is raised). A draw that still fails
# is discarded. The left figure shows the rising position reward, the pitfall penalties and the top bonus.

# %%
show_figure(views.plot_reward_structure(task), out_dir / "algorithm_rewards.png")
er = task.expected_reward[~task.terminal]
print(f"E[r|s,a] over non-terminal states: mean {er.mean():+.4f}, std {er.std():.4f}")

# %% [markdown]
# ### Acceptance
# A candidate task is kept only if it is worth learning: with discount `gamma = 2^(-1/ns)`, the optimal
# value must beat the uniform-random policy's by at least 2.0 at every start state after scaling by
# `(1 - gamma) * max_steps`; and the optimal policy's long-run state distribution (restarting after each
# terminal) must be spread out: Gini impurity above 0.70 and normalised entropy above 0.35. This rejects
# tasks where a random walk already does well and tasks where the oracle just sits in one or two states.
# The "oracle" of this check is the policy greedy at `gamma = 2^(-1/ns)` (0.958 for 16 states), not the
# gamma-0.994 oracle that labels the data and that the figures below show: a far-sighted oracle heads for the
# best states and stays there, so its long-run distribution is narrower and its entropy lower.

# %%
acc = anymdp.acceptance_statistics(task.transition, task.reward, task.start_prob, task.terminal, task.max_steps)
g_acc = oracle.acceptance_gamma(task.ns)
display(Markdown(
    f"Oracle of the check: greedy at gamma = 2^(-1/{task.ns}) = {g_acc:.3f}; each number is the minimum over the "
    "start states.\n\n| check | value | threshold |\n|---|---|---|\n"
    f"| scaled oracle - random gap | {acc['gap']:.2f} | >= {anymdp.MIN_ORACLE_GAP} |\n"
    f"| Gini impurity of the oracle's long-run distribution | {acc['gini']:.3f} | > {anymdp.MIN_GINI} |\n"
    f"| normalised entropy of that distribution | {acc['entropy']:.3f} | > {anymdp.MIN_NORMALISED_ENTROPY} |\n"
    f"| candidate draws until acceptance | {task.meta.get('draws', '?')} | |"
))

# %% [markdown]
# ### Bandits
# With `ns = 1` the task is a multi-armed bandit: a scale `B = clip(Exp(1), 0.05, 2)`, arm means uniform
# in `[B/2, B]` (redrawn until they differ), noise proportional to each mean, and every pull ends the
# episode. Below: arm means ± noise std, the best arm in orange.

# %%
bandit = anymdp.sample_anymdp(1, cfg.na, seed=cfg.seed)
_ = show_figure(views.plot_transition_graph(bandit), out_dir / "algorithm_bandit.png")

# %% [markdown]
# ## 2. Example tasks
# Each task as a graph: states on an arc in hidden-ranking order (lowest at the lower left, highest at
# the lower right), coloured by the oracle's value; edges are transitions with probability above 0.05
# (max over actions), the oracle policy's transitions in orange. The summary shows the value along the
# ranking, `E[r|s,a]`, where the gamma-0.994 oracle spends its time, and the average transition matrix. Its
# entropy panel gives two numbers: the normalised entropy of that oracle's long-run distribution (restarting from
# the start distribution), and the one the acceptance check thresholds (the gamma = 2^(-1/ns) oracle, minimum
# over start states, as in the table above). They differ because the two oracles are different policies.

# %%
for i, ns in enumerate(cfg.example_ns):
    ex_task = anymdp.sample_anymdp(ns, cfg.na, seed=cfg.seed + i)
    show_figure(views.plot_transition_graph(ex_task, policy=oracle.oracle_policy(ex_task)),
                out_dir / f"example_graph_ns{ns}.png")
    show_figure(views.plot_task_summary(ex_task), out_dir / f"example_summary_ns{ns}.png")
    if ns > 1:
        print(f"ns={ns}: acceptance-check entropy {acceptance_entropy(ex_task):.3f} (gamma 2^(-1/{ns}) oracle)")

# %% [markdown]
# The same task placed by **observation id** instead: the band disappears. This is what an in-context
# learner faces: the ranking has to be inferred from experience.

# %%
_ = show_figure(views.plot_transition_graph(task, layout="observed"), out_dir / "example_graph_observed.png")

# %% [markdown]
# ## 3. Interactive explorer
# Change `ns`, `na` or the seed (or press *Resample*) to draw a new task; pick a state to see its
# outgoing transitions and per-action successors, one action or all, a probability threshold, the layout
# (hidden ranking or observed id) and the oracle-policy overlay. *Play* runs the chosen policy (the shipped
# OmniRL-tiny model acting in context from an empty memory, the oracle, uniform random, tabular Q-learning
# with UCB exploration, or a model-based learner) in the environment and shows the visited states and the
# returns next to the exact oracle and random returns. The policy menu offers what can play the task: the shipped
# OmniRL-tiny only where a shipped model covers its states and actions (a bandit model for `ns = 1`, an AnyMDP
# model for `ns` up to 16, both with 5 actions), and the line under the controls gives its measured standing. The
# oracle is the default, except on bandits, where the shipped bandit model is (the 16-state model's in-context
# gain is small: on a given task it may do no better than the random policy). Widgets need a live kernel; in a
# static rendering only the initial state is shown.

# %%
explorer = TaskExplorer(ns=cfg.explorer_ns, na=cfg.na, seed=cfg.seed, play_steps=cfg.play_steps)
explorer

# %% [markdown]
# A run of each policy on the explorer's task (the same thing *Play* does), with the exact expected
# episode returns of the oracle and the random policy for reference. One run of a few hundred steps holds only
# a few episodes, so these returns are noisy; the sentence under the table compares the shipped model (when one
# covers this task) with the random policy on this run. The trajectory figure shows the oracle: it is the policy
# whose behaviour the rest of the workbook imitates.

# %%
rows, played = [], {}
policies = ["oracle", "random", "q_ucb", "model_based"]
if "omnirl" in explorer.offered_policies():  # a shipped model covers this task
    policies.insert(0, "omnirl")
for name in policies:
    res = played[name] = explorer.play(name, steps=cfg.play_steps, seed=cfg.seed)
    rows.append(f"| {POLICIES[name]} | {res.steps} | {res.total_return:.3f} | {res.episodes_text()} |")
text = ("| policy | steps | return over the run | finished episodes |\n"
        "|---|---|---|---|\n" + "\n".join(rows)
        + f"\n\nExact expected episode return: oracle {res.oracle_return:.3f}, random {res.random_return:.3f}.")
if "omnirl" in played:
    om, rnd = played["omnirl"].total_return, played["random"].total_return
    text += (f" On this run the shipped model collects {om:.3f}, "
             + ("less than" if om < rnd else "more than" if om > rnd else "as much as")
             + f" the random policy's {rnd:.3f}: one run on one task, not a measurement of the model"
             " (notebook 04 measures it over many tasks).")
display(Markdown(text))
explorer.policy.value = "oracle"  # the demonstrated policy (the widget's control changes with it)
explorer.play_and_show()
_ = show_figure(explorer.trajectory_figure, out_dir / "explorer_trajectory.png")

# %% [markdown]
# The shipped OmniRL-tiny in *Play* on a bandit (`ns = 1`): each pull is an episode; over the run it should
# settle on the best arm (the oracle's action), learning only from the rewards in its memory. The figure shows
# the arm of every pull, the reward with its running mean against the best and the average arm's expected
# reward, and the share of recent pulls that went to the best arm (1/na for a uniform-random policy).

# %%
bandit_explorer = TaskExplorer(ns=1, na=cfg.na, seed=cfg.seed, play_steps=400)
res = bandit_explorer.play("omnirl")  # the shipped bandit model (the default policy on bandits)
best = bandit_explorer.oracle_actions[0]
quarters = [(res.actions[i * 100:(i + 1) * 100] == best).mean() for i in range(4)]
print(f"policy {res.policy}: share of pulls on the best arm per 100 pulls: "
      + ", ".join(f"{q:.2f}" for q in quarters))
show_figure(views.plot_trajectory(res.states, res.rewards, bandit_explorer.task, actions=res.actions,
                                  title=f"{POLICIES[res.policy]} on a {cfg.na}-armed bandit: {res.steps} pulls"),
            out_dir / "explorer_bandit_omnirl.png")

# %% [markdown]
# ## 4. Statistics: our sampler against the reference
# For each `ns` in the configuration we draw `stats_tasks_per_ns` tasks and compute per-task statistics
# (`omnirl_core.world.stats.task_statistics`): terminal count, goal fraction, episode limit, successors per
# `(s, a)`, start states, mean and spread of `E[r|s,a]`, mean noise, and the exact episode returns of the
# oracle (gamma 0.994) and of the random policy. The reference numbers were measured on Xenoverse's
# sampler (its seeds, its task counts). `z` is the difference of means in standard errors; with ~20 tasks
# per ns, |z| up to about 2-3 is what sampling noise alone gives, and heavy-tailed statistics (returns,
# reward spread) fluctuate more.

# %%
reference = stats.load_reference_statistics()
per_ns_rows, ours_summary = {}, {}
for ns in cfg.stats_ns:
    seeds = [cfg.seed * 100_000 + i for i in range(cfg.stats_tasks_per_ns)]
    per_ns_rows[ns] = [stats.task_statistics(anymdp.sample_anymdp(ns, cfg.na, seed=s)) for s in seeds]
    ours_summary[f"ns{ns}"] = stats.summarise(per_ns_rows[ns])

with open(out_dir / "task_stats.csv", "w", newline="") as fh:
    keys = list(next(iter(per_ns_rows.values()))[0])
    writer = csv.writer(fh)
    writer.writerow(["ns", "task"] + keys)
    for ns, rows_ in per_ns_rows.items():
        for i, r in enumerate(rows_):
            writer.writerow([ns, i] + [r[k] for k in keys])
_ = (out_dir / "task_stats_summary.json").write_text(json.dumps(ours_summary, indent=1))

for ns in cfg.stats_ns:
    key = f"ns{ns}"
    if key in reference:
        table = views.markdown_stat_table(ours_summary[key], reference[key], stats=stats.REFERENCE_STATISTICS)
        display(Markdown(f"**ns = {ns}** ({cfg.stats_tasks_per_ns} tasks here, {reference[key]['n_tasks']} "
                         f"in the reference)\n\n{table}"))
    else:
        display(Markdown(f"**ns = {ns}**: no reference numbers for this size"))

# %% [markdown]
# The same comparison as a figure, and as one claim per `ns`: every statistic's mean lies within one reference
# standard deviation of the reference's mean (the difference divided by the reference's std, with a Welch 95%
# interval). This is a coarse check: it catches a sampler that is off by a lot, not small shifts. With
# `stats_tasks_per_ns` = 20 tasks per size (the quick profile) an interval is about one reference std wide, so a
# heavy-tailed statistic (the returns, the reward spread) can leave the claim *not shown*: the run is then too
# small to decide, not a sign that the samplers differ (that would be an interval wholly outside the band:
# *contradicted*). The claim shows the statistic that speaks most against it.

# %%
common = {k: v for k, v in ours_summary.items() if k in reference}
if common:
    show_figure(views.plot_stat_comparison(common, {k: reference[k] for k in common},
                                           stats=stats.REFERENCE_STATISTICS, labels=("ours", "reference")),
                out_dir / "stats_vs_reference.png")
    for key in common:
        worst = least_agreeing_statistic(ours_summary[key], reference[key], stats.REFERENCE_STATISTICS)
        if worst is not None:
            name, d = worst
            undecided = decide({"kind": "within", "low": -1.0, "high": 1.0}, d["d_low"], d["d_high"]) == NOT_SHOWN
            sheet.within(f"stats_{key}", f"ns={key[2:]}: every statistic of our tasks has its mean within one "
                         f"reference std of the reference's (least agreeing: {name})", d["d"],
                         (d["d_low"], d["d_high"]), -1.0, 1.0, measure="difference of means / reference std",
                         note=f"{cfg.stats_tasks_per_ns} tasks per size: too few to decide" if undecided else "")
else:
    no_figure("no size of stats_ns has reference numbers")

# %% [markdown]
# ## 5. Oracle vs random returns
# Each point is one task: the exact expected episode return of the uniform-random policy (x) and of the
# oracle (y), both computed by dynamic programming over the task's step limit (`Task.horizon`:
# `ceil(max_steps)` steps). The acceptance check compares discounted values at
# `gamma = 2^(-1/ns)`, not these undiscounted returns, and the oracle here is greedy at gamma 0.994 rather than
# optimal for the finite horizon, so a task can sit near or even below the diagonal; for bandits the "oracle" is
# the best arm. The claim per `ns` is about the average task: the normalised gap
# `(oracle - random) / (|oracle| + |random|)` (between -1 and 1, positive when the oracle is ahead) has a mean
# above 0; the note says on how many of the tasks the oracle is ahead.

# %%
returns = {
    ns: ([r["ret_oracle"] for r in rows_], [r["ret_random"] for r in rows_]) for ns, rows_ in per_ns_rows.items()
}
show_figure(views.plot_oracle_vs_random(returns), out_dir / "oracle_vs_random.png")
table = ["| ns | mean oracle return | mean random return | oracle > random | normalised gap, mean [95% CI] |",
         "|---|---|---|---|---|"]
for ns, (o, r) in returns.items():
    o, r = np.asarray(o), np.asarray(r)
    gap = (o - r) / np.maximum(np.abs(o) + np.abs(r), 1e-12)
    m, lo, hi = mean_ci(gap)
    ahead = int((o > r).sum())
    table.append(f"| {ns} | {o.mean():.3f} | {r.mean():.3f} | {ahead} of {o.size} | {m:+.3f} [{lo:+.3f}, {hi:+.3f}] |")
    sheet.above(f"oracle_beats_random_ns{ns}", f"ns={ns}: the oracle's exact episode return beats the random "
                "policy's on the average task", m, (lo, hi), 0.0, measure="normalised gap, over tasks",
                note=f"oracle ahead on {ahead} of {o.size} tasks")
display(Markdown("\n".join(table)))

# %% [markdown]
# ## 6. Sampling time
# Wall-clock seconds to draw one accepted task (all rejections included), `timing_repeats` seeds per
# `ns`, against the median the reference sampler needed on this kind of machine (one core). The
# reference spends almost all its time in a slow value-iteration loop; ours solves the candidates'
# MDPs by batched policy iteration.

# %%
timings = {}
for ns in cfg.timing_ns:
    timings[ns] = []
    for rep in range(cfg.timing_repeats):
        t0 = time.perf_counter()
        anymdp.sample_anymdp(ns, cfg.na, seed=cfg.seed * 1000 + rep)
        timings[ns].append(time.perf_counter() - t0)
ref_times = {int(k[2:]): v["sample_seconds_median"] for k, v in reference.items()
             if k.startswith("ns") and isinstance(v, dict) and "sample_seconds_median" in v and k != "ns1"}
with open(out_dir / "sampling_times.csv", "w", newline="") as fh:
    writer = csv.writer(fh)
    writer.writerow(["ns", "repeat", "seconds"])
    for ns, ts in timings.items():
        writer.writerows([ns, i, t] for i, t in enumerate(ts))
display(Markdown("| ns | ours median (s) | reference median (s) |\n|---|---|---|\n" + "\n".join(
    f"| {ns} | {np.median(ts):.3f} | {ref_times.get(ns, float('nan')):.3f} |" for ns, ts in timings.items())))
_ = show_figure(views.plot_timings(timings, ref_times), out_dir / "sampling_times.png")

# %% [markdown]
# ## What this run shows
#
# Each claim of this notebook with the number this run computed, its 95% interval and the rule that decides
# the verdict: *holds* when the whole interval is on the claimed side, *contradicted* when it is wholly on the
# other, *not shown* otherwise. The table is also written to `01_tasks/claims.json`.

# %%
display(Markdown("### What this run shows\n\n" + sheet.markdown()))
print("outputs written to", out_dir.resolve())
print(sorted(p.name for p in out_dir.iterdir()))
