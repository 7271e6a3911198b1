"""Data streams of meta-training: :class:`StandInData` (synthetic in-context bandit-like sequences, a pure function
of (seed, step, sequence index), used when ``data.path`` is unset) and :class:`DatasetStream` (a synthesised
dataset folder read through :class:`omnirl_core.synthesis.SequenceDataset`). Both yield dicts of [B, T]
tensors: obs, tag, action, reward, label, label_mask. :class:`MixedStream` puts stand-in sequences in place of some of a
dataset's (``data.standin_share``), to practise keyed memory beside the dataset's tasks.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..workbook.config import repo_path
from .config import DataConfig, TrainConfig


class StandInData:
    """Synthetic sequences with the training batch format, a pure function of (seed, step, sequence index).

    Each sequence hides a best action per state; states are drawn uniformly, a behaviour acts
    epsilon-greedily (epsilon drawn per sequence, its quality given by the tag) and gets reward 1 for the
    best action; the label is the best action. The best action can only be inferred from context (plus a bias
    towards action 0), so the loss falls with position as a model learns in context. Sequence ``i`` of
    iteration ``k`` depends only on ``(seed, k, i)``: process ``r`` of ``W`` takes global indices
    ``r*B .. r*B+B-1``, so the processes together see exactly a single process's batch of ``W*B``.
    """

    def __init__(self, cfg: DataConfig, seed: int, rank: int = 0, world_size: int = 1):
        self.cfg, self.seed, self.rank, self.world_size = cfg, seed, rank, world_size
        self.step = 0

    def sequence(self, step: int, index: int) -> dict[str, np.ndarray]:
        c = self.cfg
        T, ns, na = c.seq_len, c.ns, c.na
        rng = np.random.default_rng([self.seed, step, index])
        p = np.full(na, (1 - c.best_action_bias) / na)
        p[0] += c.best_action_bias
        best = rng.choice(na, size=ns, p=p)
        eps = rng.uniform(0.1, 1.0)
        obs = rng.integers(0, ns, T)
        explore = rng.random(T) < eps
        action = np.where(explore, rng.integers(0, na, T), best[obs])
        reward = (action == best[obs]).astype(np.float32)
        tag = np.full(T, 1 if eps < 0.5 else 6) if rng.random() > 0.15 else np.full(T, 7)
        label = best[obs]
        end = (np.arange(T) % (c.episode_len + 1)) == c.episode_len  # episode-end steps
        action[end], reward[end], tag[end] = na, 0.0, 7
        return {"obs": obs, "tag": tag, "action": action, "reward": reward, "label": label, "label_mask": ~end}

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        B = self.cfg.batch_size
        seqs = [self.sequence(step, self.rank * B + j) for j in range(B)]
        out = {k: torch.from_numpy(np.stack([s[k] for s in seqs])) for k in seqs[0]}
        for k in ("obs", "tag", "action", "label"):
            out[k] = out[k].long()
        return out

    def next_batch(self) -> dict[str, torch.Tensor]:
        b = self.batch(self.step)
        self.step += 1
        return b

    def state_dict(self) -> dict:
        return {"kind": "stand-in", "step": self.step}

    def load_state_dict(self, sd: dict) -> None:
        self.step = int(sd["step"])


class DatasetStream:
    """Whole sequences (cut to ``seq_len``) from a synthesised dataset, epoch after epoch, with a resumable position."""

    def __init__(self, cfg: DataConfig, seed: int, rank: int = 0, world_size: int = 1):
        from ..synthesis import DatasetError, SequenceDataset, load_manifest

        root = repo_path(cfg.path)
        man = load_manifest(root)
        if cfg.seq_len is not None and cfg.seq_len > man["seq_len"]:
            raise DatasetError(f"data.seq_len {cfg.seq_len} is longer than the sequences of {root} "
                               f"({man['seq_len']} steps); set data.seq_len <= {man['seq_len']}, or null for the "
                               "dataset's length")
        self.cfg, self.seq_len = cfg, cfg.seq_len or man["seq_len"]
        self.manifest = man
        self.ds = SequenceDataset(root, cfg.batch_size, man["seq_len"], rank=rank, world_size=world_size,
                                  seed=seed, verify=cfg.verify)
        if len(self.ds) == 0:
            raise DatasetError(f"{root}: no full batch of data.batch_size {cfg.batch_size} sequences for process "
                               f"{rank} of {world_size} (its shards hold "
                               f"{sum(r['n_sequences'] for r in self.ds.records)} sequences)")
        self.epoch, self.pos, self._it = 0, 0, None

    def next_batch(self) -> dict[str, torch.Tensor]:
        if self._it is None:
            self.ds.set_epoch(self.epoch)
            self._it = self.ds.batches(start=self.pos)  # resume: skip, unread, what this epoch already used
        try:
            b = next(self._it)
        except StopIteration:
            self.epoch, self.pos, self._it = self.epoch + 1, 0, None
            return self.next_batch()
        self.pos += 1
        T = self.seq_len
        return {k: b[k][:, :T] for k in ("obs", "tag", "action", "reward", "label", "label_mask")}

    def state_dict(self) -> dict:
        return {"kind": "dataset", "epoch": self.epoch, "pos": self.pos, "order": self.ds.order}

    def load_state_dict(self, sd: dict) -> None:
        self.epoch, self.pos, self._it = int(sd["epoch"]), int(sd["pos"]), None
        self.ds.order = sd.get("order", "shards")  # a checkpoint from before the interleaved order resumes in its own


class MixedStream:
    """A dataset's batches with their first ``round(standin_share * batch_size)`` rows replaced by stand-in
    sequences of the same length; the stand-in rows of iteration k are a pure function of (seed, k) like
    :class:`StandInData`'s, so a resume and any number of processes see the same batches."""

    def __init__(self, dataset: DatasetStream, cfg: DataConfig, seed: int, rank: int = 0, world_size: int = 1):
        self.dataset = dataset
        self.n_standin = round(cfg.standin_share * cfg.batch_size)
        standin_cfg = dataclasses.replace(cfg, seq_len=dataset.seq_len, batch_size=self.n_standin)
        self.standin = StandInData(standin_cfg, seed, rank, world_size)
        self.manifest = dataset.manifest

    def next_batch(self) -> dict[str, torch.Tensor]:
        batch = self.dataset.next_batch()
        extra = self.standin.next_batch()
        k = self.n_standin
        return {key: torch.cat([extra[key].to(value.dtype), value[k:]]) for key, value in batch.items()}

    def state_dict(self) -> dict:
        return {"kind": "mixed", "dataset": self.dataset.state_dict(), "standin": self.standin.state_dict()}

    def load_state_dict(self, sd: dict) -> None:
        self.dataset.load_state_dict(sd["dataset"])
        self.standin.load_state_dict(sd["standin"])


def make_data(cfg: TrainConfig, rank: int = 0, world_size: int = 1):
    """The data source of a run: the dataset at ``data.path`` (checked against the model), mixed with stand-in
    sequences when ``data.standin_share`` > 0, or the stand-in alone."""
    if cfg.data.path:
        stream = DatasetStream(cfg.data, cfg.seed, rank, world_size)
        dc = stream.manifest.get("config", {})
        ns = max(dc.get("ns") or 0, dc.get("ns_max") or 0)
        if dc.get("na") != cfg.model.na or ns > cfg.model.ns_max:
            from ..synthesis import DatasetError

            raise DatasetError(f"{cfg.data.path}: dataset has ns up to {ns} and na {dc.get('na')}; the model needs "
                             f"ns <= model.ns_max ({cfg.model.ns_max}) and na == model.na ({cfg.model.na})")
        if cfg.data.standin_share > 0:
            return MixedStream(stream, cfg.data, cfg.seed, rank, world_size)
        return stream
    return StandInData(cfg.data, cfg.seed, rank, world_size)


def mask_states(obs: torch.Tensor, p: float, ns_max: int, seed: int, step: int, rank: int, world_size: int):
    """Replace each input state by the masked id with probability ``p``; the draw depends on (seed, step) and the
    sequence's global index only, so it is the same whatever the number of processes and after a resume."""
    if p <= 0:
        return obs
    B, T = obs.shape
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step, 7]).generate_state(1)[0]))
    u = torch.rand(B * world_size, T, generator=g)[rank * B : (rank + 1) * B]
    return torch.where(u.to(obs.device) < p, torch.full_like(obs, ns_max), obs)
