"""Keyed or not? On held-out stand-in sequences (training.StandInData, seed 10**6 as the trainer's eval), the
label cross entropy per quarter of the context of
  - the prior (best-action bias only),
  - an UN-keyed counter: which actions have been rewarded so far in the sequence, whatever the state
    (p(a) ~ prior_a * alpha + rewarded count_a; the best alpha on the grid, so it flatters this reference),
  - a KEYED table: once some action was rewarded in state s, that action (p = 1 - 4e-3); else the un-keyed counter,
and, for each checkpoint given, the model's cross entropy, also split into steps whose state has already had a
rewarded action in the context ("known") and steps whose state has not ("unknown"). A model with keyed memory is
much better on known steps than on unknown ones; one that only counts rewarded actions is not.
  .venv/bin/python scripts/keyed_diag.py NS [--T 2048] [--bias 0.4] CKPT [CKPT ...]
"""

import sys

import numpy as np
import torch
import torch.nn.functional as F

from omnirl_core.evaluation import load_model
from omnirl_core.training import DataConfig, StandInData

torch.set_num_threads(1)
ns = int(sys.argv[1])
ckpts = sys.argv[2:]
T, bias = 2048, 0.4
while ckpts[:1] in (["--T"], ["--bias"]):
    if ckpts[0] == "--T":
        T = int(ckpts[1])
    else:
        bias = float(ckpts[1])
    ckpts = ckpts[2:]
cfg = DataConfig(path=None, batch_size=8, seq_len=T, ns=ns, na=5, episode_len=50, best_action_bias=bias)
data = StandInData(cfg, 10**6)
batches = [data.batch(k) for k in range(4)]
na = 5
prior = np.full(na, (1 - bias) / na)
prior[0] += bias


def refs(b, alpha):
    obs, act, rew, lab, m = (b[k].numpy() for k in ("obs", "action", "reward", "label", "label_mask"))
    B, T = obs.shape
    ce_un = np.zeros((B, T))
    ce_key = np.zeros((B, T))
    known = np.zeros((B, T), bool)
    for i in range(B):
        cnt = np.zeros(na)
        found = {}
        for t in range(T):
            p = prior * alpha + cnt
            p = p / p.sum()
            ce_un[i, t] = -np.log(p[lab[i, t]])
            s = obs[i, t]
            if s in found:
                known[i, t] = True
                q = np.full(na, 1e-3)
                q[found[s]] = 1 - 4e-3
                ce_key[i, t] = -np.log(q[lab[i, t]])
            else:
                ce_key[i, t] = ce_un[i, t]
            if m[i, t] and act[i, t] < na and rew[i, t] > 0:
                cnt[act[i, t]] += 1
                found.setdefault(s, act[i, t])
    return ce_un, ce_key, known, m.astype(bool)


def quarters(ce, mask):
    T = ce.shape[1]
    q = np.arange(T) * 4 // T
    return [float(ce[mask & (q == k)[None]].mean()) for k in range(4)]


best = None
for alpha in (0.5, 1, 2, 5, 10, 20, 50):
    outs = [refs(b, alpha) for b in batches]
    un = np.concatenate([o[0] for o in outs])
    m = np.concatenate([o[3] for o in outs])
    v = float(un[m].mean())
    if best is None or v < best[0]:
        best = (v, alpha, outs)
_, alpha, outs = best
un, key, known, m = (np.concatenate([o[j] for o in outs]) for j in range(4))
lab = torch.cat([b["label"] for b in batches]).numpy()
pri = -np.log(prior[lab])


def reward_refs(b):
    obs, act, rew, m = (b[k].numpy() for k in ("obs", "action", "reward", "label_mask"))
    B, T = obs.shape
    e_un = np.zeros((B, T))
    e_key = np.zeros((B, T))
    for i in range(B):
        su, nu = np.zeros(na), np.zeros(na)
        sk, nk = np.zeros((ns, na)), np.zeros((ns, na))
        for t in range(T):
            if not m[i, t]:
                continue
            s_, a_, r_ = obs[i, t], act[i, t], rew[i, t]
            pu = (su[a_] + 0.2) / (nu[a_] + 1)
            pk = (sk[s_, a_] + pu) / (nk[s_, a_] + 1)
            e_un[i, t] = (pu - r_) ** 2
            e_key[i, t] = (pk - r_) ** 2
            su[a_] += r_
            nu[a_] += 1
            sk[s_, a_] += r_
            nk[s_, a_] += 1
    return e_un, e_key


rr = [reward_refs(b) for b in batches]
r_un, r_key = (np.concatenate([o[j] for o in rr]) for j in range(2))


def fmt(xs):
    return " ".join(f"{x:.3f}" for x in xs)


print(
    f"ns={ns}: held-out stand-in, 4 x 8 x {T} steps, best_action_bias {bias}; CE per quarter Q1 Q2 Q3 Q4 | "
    "known-state share per quarter "
    + fmt(quarters(known.astype(float), m))
)
print(f"  prior                      {fmt(quarters(pri, m))}")
print(f"  un-keyed counter (a={alpha:g})   {fmt(quarters(un, m))}")
print(f"  keyed table                {fmt(quarters(key, m))}")
print(
    f"  reward MSE (non-boundary steps) per quarter: un-keyed per-action mean {fmt(quarters(r_un, m))}; "
    f"keyed per-(state, action) mean {fmt(quarters(r_key, m))}"
)
for c in ckpts:
    model = load_model(c)
    model.eval()
    ces, rws = [], []
    with torch.no_grad():
        for b in batches:
            mem, parts = None, []
            for t0 in range(0, T, 512):
                sl = slice(t0, t0 + 512)
                lg, aux, mem = model(b["obs"][:, sl], b["tag"][:, sl], b["action"][:, sl], b["reward"][:, sl], mem)
                parts.append(lg)
                if "reward_pred" in aux:
                    rws.append((t0, aux["reward_pred"].float()))
            lg = torch.cat(parts, 1)
            ces.append(
                F.cross_entropy(lg.reshape(-1, na), b["label"].clamp(0, na - 1).reshape(-1), reduction="none")
                .view(lg.shape[:2])
                .numpy()
            )
    ce = np.concatenate(ces)
    if rws:
        rp = np.concatenate(
            [
                np.concatenate([r.numpy() for t0, r in rws[j * (T // 512) : (j + 1) * (T // 512)]], 1)
                for j in range(len(batches))
            ]
        )
        rt = torch.cat([b["reward"] for b in batches]).numpy()
        print(f"    reward MSE of the model's reward head: {fmt(quarters((rp - rt) ** 2, m))}")
    print(
        f"  model {c}\n    all     {fmt(quarters(ce, m))}\n    known   {fmt(quarters(ce, m & known))}"
        f"\n    unknown {fmt(quarters(ce, m & ~known))}\n    (un-keyed counter on the same known / unknown steps: "
        f"{float(un[m & known].mean()):.3f} / {float(un[m & ~known].mean()):.3f})"
    )
