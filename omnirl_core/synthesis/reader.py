"""The training reader: a synthesised dataset as batches of ``[batch_size, chunk_len]`` chunks, one group of
sequences at a time (all the chunks of a group in order, then the next group).

Ranks: process ``rank`` of ``world_size`` reads the shards whose index is ``rank`` mod ``world_size``, so the
ranks' sequences are disjoint. Order (``order="interleaved"``, the default): every epoch, the sequences of all
of this rank's shards are put in one seeded random order, a pure function of (seed, epoch, rank, world_size), and
cut into groups of ``batch_size``, so a group is a draw without replacement from the whole rank's data. A shard
holds one state count (D_Large draws ns per shard), and reading shard by shard gave a GPU one ns for hundreds of
iterations; interleaved, a batch mixes the state counts as independent draws do. ``order="shards"`` is the
earlier order (the shards in a seeded random order, each shard's sequences shuffled and grouped within it),
kept so that a run checkpointed under it resumes exactly. Shards are memory-mapped; a few recently used ones
are kept open. ``start`` (:meth:`SequenceDataset.batches`) resumes an epoch at a batch without reading the
batches before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .format import _INT_FIELDS, LABEL_MASKED, load_manifest, load_shard

_ORDERS = ("interleaved", "shards")
_OPEN_SHARDS = 64  # memory-mapped shards kept open at once (each holds a file handle per field)


class SequenceDataset(IterableDataset):
    """Batches of ``[batch_size, chunk_len]`` chunks of a synthesised dataset (see the module docstring).

    ``drop_last``: a last group of fewer than ``batch_size`` sequences is dropped (default; per shard under
    ``order="shards"``); chunks shorter than ``chunk_len`` at the end of a sequence are always dropped.
    """

    def __init__(self, root: str | Path, batch_size: int, chunk_len: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0, epoch: int = 0, verify: bool = True, drop_last: bool = True,
                 shuffle: bool = True, order: str = "interleaved") -> None:
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if batch_size < 1 or chunk_len < 1:
            raise ValueError("batch_size and chunk_len must be >= 1")
        if order not in _ORDERS:
            raise ValueError(f"order must be one of {_ORDERS}, got {order!r}")
        self.root = Path(root)
        self.manifest = load_manifest(self.root)
        self.batch_size, self.chunk_len = int(batch_size), int(chunk_len)
        self.rank, self.world_size = int(rank), int(world_size)
        self.seed, self.epoch = int(seed), int(epoch)
        self.drop_last, self.shuffle, self.order = drop_last, shuffle, order
        self.records = [r for r in self.manifest["shards"] if r["index"] % self.world_size == self.rank]
        if self.manifest["seq_len"] < self.chunk_len:
            raise ValueError(f"chunk_len {chunk_len} exceeds the sequence length {self.manifest['seq_len']}")
        for r in self.records:  # verify on open: fail now, not in the middle of an epoch
            load_shard(self.root, r, verify=verify)
        self._opened: dict[int, dict] = {}  # recently used shards, memory-mapped, oldest first

    def __getstate__(self) -> dict:  # a DataLoader worker opens its own shards
        return {**self.__dict__, "_opened": {}}

    @property
    def shard_indices(self) -> list[int]:
        """Shards this rank reads."""
        return [r["index"] for r in self.records]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.groups()) * (self.manifest["seq_len"] // self.chunk_len)

    def groups(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """This epoch's groups in reading order: (positions in ``records`` [k], sequence rows [k]) each."""
        if self.order == "shards":
            return self._shard_groups()
        shard = np.concatenate([np.full(r["n_sequences"], i, dtype=np.int64) for i, r in enumerate(self.records)]
                               + [np.zeros(0, dtype=np.int64)])
        row = np.concatenate([np.arange(r["n_sequences"], dtype=np.int64) for r in self.records]
                             + [np.zeros(0, dtype=np.int64)])
        if self.shuffle:
            perm = np.random.default_rng([self.seed, self.epoch, self.rank, self.world_size, 1]).permutation(
                shard.size)
            shard, row = shard[perm], row[perm]
        n = shard.size // self.batch_size * self.batch_size if self.drop_last else shard.size
        return [(shard[g : min(g + self.batch_size, n)], row[g : min(g + self.batch_size, n)])
                for g in range(0, n, self.batch_size)]

    def _shard_groups(self) -> list[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, self.world_size])
        pos = rng.permutation(len(self.records)) if self.shuffle else np.arange(len(self.records))
        out = []
        for i in pos.tolist():
            rec = self.records[i]
            n = rec["n_sequences"]
            order = np.random.default_rng([self.seed, self.epoch, rec["index"]]).permutation(n) if self.shuffle \
                else np.arange(n)
            for g in range(0, n, self.batch_size):
                rows = np.sort(order[g : g + self.batch_size])
                if rows.size < self.batch_size and self.drop_last:
                    break
                out.append((np.full(rows.size, i, dtype=np.int64), rows))
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.batches()

    def batches(self, start: int = 0) -> Iterator[dict[str, Any]]:
        """This epoch's batches from batch ``start`` on (the batches before it are skipped unread)."""
        groups = self.groups()
        info = get_worker_info()
        if info is not None:
            groups = groups[info.id :: info.num_workers]
        T, C = self.manifest["seq_len"], self.chunk_len
        per = T // C
        for gi in range(start // per, len(groups)):
            data = self._gather(*groups[gi])
            for c in range(start - gi * per if gi == start // per else 0, per):
                sl = slice(c * C, (c + 1) * C)
                batch = {f: torch.from_numpy(np.asarray(data[f][:, sl], dtype=np.int64)) for f in _INT_FIELDS}
                batch["reward"] = torch.from_numpy(np.asarray(data["reward"][:, sl], dtype=np.float32))
                batch["label_mask"] = batch["label"] != LABEL_MASKED
                batch["seq"] = torch.from_numpy(data["seq"])
                batch["chunk"] = c
                yield batch

    def _gather(self, shard: np.ndarray, row: np.ndarray) -> dict[str, np.ndarray]:
        """The [k, T] arrays of the group's sequences (rows of a shard are read in ascending order, in one go)."""
        out: dict[str, list] = {f: [] for f in (*_INT_FIELDS, "reward")}
        where = np.zeros(shard.size, dtype=np.int64)
        done = 0
        for i in np.unique(shard).tolist():
            take = np.flatnonzero(shard == i)
            rows = row[take]
            srt = np.argsort(rows, kind="stable")
            data = self._open(i)
            for f in out:
                out[f].append(np.asarray(data[f][rows[srt]]))
            where[take[srt]] = np.arange(done, done + take.size)
            done += take.size
        res = {f: np.concatenate(v)[where] for f, v in out.items()}
        res["seq"] = np.array([self.records[i]["index"] for i in shard.tolist()], dtype=np.int64) * 2**32 + row
        return res

    def _open(self, i: int) -> dict[str, np.ndarray]:
        """The memory-mapped arrays of ``records[i]``, kept among the last ``_OPEN_SHARDS`` used."""
        data = self._opened.pop(i, None)
        if data is None:
            if len(self._opened) >= _OPEN_SHARDS:
                self._opened.pop(next(iter(self._opened)))
            data = load_shard(self.root, self.records[i], verify=False)
        self._opened[i] = data
        return data
