"""PH
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .format import _INT_FIELDS, LABEL_MASKED, load_manifest, load_shard


class SequenceDataset(IterableDataset):
    """Batches of ``[batch_size, chunk_len]`` chunks of a synthesised dataset (see the module docstring).

    ``drop_last``: a group of fewer than ``batch_size`` sequences at the end of a shard is dropped (default);
    chunks shorter than ``chunk_len`` at the end of a sequence are always dropped.
    """

    def __init__(self, root: str | Path, batch_size: int, chunk_len: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0, epoch: int = 0, verify: bool = True, drop_last: bool = True,
                 shuffle: bool = True) -> None:
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if batch_size < 1 or chunk_len < 1:
            raise ValueError("batch_size and chunk_len must be >= 1")
        self.root = Path(root)
        self.manifest = load_manifest(self.root)
        self.batch_size, self.chunk_len = int(batch_size), int(chunk_len)
        self.rank, self.world_size = int(rank), int(world_size)
        self.seed, self.epoch = int(seed), int(epoch)
        self.drop_last, self.shuffle = drop_last, shuffle
        self.records = [r for r in self.manifest["shards"] if r["index"] % self.world_size == self.rank]
        if self.manifest["seq_len"] < self.chunk_len:
            raise ValueError(f"chunk_len {chunk_len} exceeds the sequence length {self.manifest['seq_len']}")
        for r in self.records:  # verify on open: fail now, not in the middle of an epoch
            load_shard(self.root, r, verify=verify)

    @property
    def shard_indices(self) -> list[int]:
        """Shards this rank reads."""
        return [r["index"] for r in self.records]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        per_seq = self.manifest["seq_len"] // self.chunk_len
        n = 0
        for r in self.records:
            groups = r["n_sequences"] // self.batch_size if self.drop_last else -(-r["n_sequences"] // self.batch_size)
            n += groups * per_seq
        return n

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, self.world_size])
        records = list(self.records)
        if self.shuffle:
            records = [records[i] for i in rng.permutation(len(records))]
        info = get_worker_info()
        if info is not None:
            records = records[info.id :: info.num_workers]
        T, C = self.manifest["seq_len"], self.chunk_len
        for rec in records:
            order_rng = np.random.default_rng([self.seed, self.epoch, rec["index"]])
            data = load_shard(self.root, rec, verify=False)
            n = rec["n_sequences"]
            order = order_rng.permutation(n) if self.shuffle else np.arange(n)
            for g in range(0, n, self.batch_size):
                rows = np.sort(order[g : g + self.batch_size])
                if rows.size < self.batch_size and self.drop_last:
                    break
                for c in range(T // C):
                    sl = slice(c * C, (c + 1) * C)
                    batch = {f: torch.from_numpy(np.asarray(data[f][rows, sl], dtype=np.int64)) for f in _INT_FIELDS}
                    batch["reward"] = torch.from_numpy(np.asarray(data["reward"][rows, sl], dtype=np.float32))
                    batch["label_mask"] = batch["label"] != LABEL_MASKED
                    batch["seq"] = torch.from_numpy(rec["index"] * 2**32 + rows.astype(np.int64))
                    batch["chunk"] = c
                    yield batch
