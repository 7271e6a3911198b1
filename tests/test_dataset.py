"""The training loader: batches, rank sharding, reproducible shuffling, and corrupt data caught on open."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from omnirl_core.synthesis import LABEL_MASKED, DatasetConfig, DatasetError, SequenceDataset, load_manifest, synthesize
from omnirl_core.workbook import load_config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    cfg = load_config(DatasetConfig, {"seq_len": 256, "n_sequences": 20, "sequences_per_shard": 4, "batch_size": 4,
                                      "seed": 11})
    synthesize(cfg, root, workers=1, progress=False)
    return root


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_batches_have_the_right_shapes_and_types(data_dir):
    ds = SequenceDataset(data_dir, batch_size=2, chunk_len=64)
    batches = list(ds)
    assert len(batches) == len(ds) == 5 * 2 * 4
    b = batches[0]
    for f in ("obs", "tag", "action", "label"):
        assert b[f].shape == (2, 64) and b[f].dtype == torch.int64
    assert b["reward"].dtype == torch.float32 and b["label_mask"].dtype == torch.bool
    assert torch.equal(b["label_mask"], b["label"] != LABEL_MASKED)
    assert [x["chunk"] for x in batches[:4]] == [0, 1, 2, 3]
    assert all(torch.equal(x["seq"], batches[0]["seq"]) for x in batches[:4])  # a group walks its sequences


def test_chunks_reassemble_the_stored_sequences(data_dir):
    ds = SequenceDataset(data_dir, batch_size=4, chunk_len=128, shuffle=False)
    it = iter(ds)
    first, second = next(it), next(it)
    obs = np.load(data_dir / "shard_000000" / "obs.npy")
    assert np.array_equal(torch.cat([first["obs"], second["obs"]], 1).numpy(), obs)


def test_ranks_read_disjoint_shards_covering_everything(data_dir):
    seen = []
    for rank in range(3):
        ds = SequenceDataset(data_dir, batch_size=4, chunk_len=256, rank=rank, world_size=3)
        assert ds.shard_indices == [i for i in range(5) if i % 3 == rank]
        seen.append({int(s) for b in ds for s in b["seq"]})
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and not (seen[0] & seen[2])
    assert len(seen[0] | seen[1] | seen[2]) == 20


def test_shuffling_is_reproducible_per_epoch(data_dir):
    def order(epoch, seed=0):
        ds = SequenceDataset(data_dir, batch_size=1, chunk_len=256, seed=seed)
        ds.set_epoch(epoch)
        return [int(b["seq"][0]) for b in ds]

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == sorted(order(1))


def test_dataloader_workers_split_the_shards(data_dir):
    ds = SequenceDataset(data_dir, batch_size=4, chunk_len=256)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    seqs = sorted(int(s) for b in loader for s in b["seq"])
    assert len(seqs) == 20 == len(set(seqs))


def test_corrupt_shard_is_caught_and_named(data_dir, tmp_path):
    bad = _copy(data_dir, tmp_path / "bad")
    path = bad / "shard_000002" / "reward.npy"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # same size, one flipped byte
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"shard_000002/reward\.npy: checksum mismatch"):
        SequenceDataset(bad, batch_size=2, chunk_len=64)


def test_truncated_and_missing_files_are_caught(data_dir, tmp_path):
    trunc = _copy(data_dir, tmp_path / "trunc")
    path = trunc / "shard_000001" / "obs.npy"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"shard_000001/obs\.npy: truncated"):
        SequenceDataset(trunc, batch_size=2, chunk_len=64)
    miss = _copy(data_dir, tmp_path / "miss")
    (miss / "shard_000004" / "label.npy").unlink()
    with pytest.raises(DatasetError, match=r"shard_000004/label\.npy: missing"):
        SequenceDataset(miss, batch_size=2, chunk_len=64)


def test_wrong_dtype_is_caught(data_dir, tmp_path):
    bad = _copy(data_dir, tmp_path / "dtype")
    man = json.loads((bad / "manifest.json").read_text())
    path = bad / "shard_000000" / "tag.npy"
    np.save(path, np.load(path).view(np.int8))  # same bytes, other dtype
    import hashlib

    info = man["shards"][0]["files"]["tag"]
    info["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    info["bytes"] = path.stat().st_size
    (bad / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(DatasetError, match=r"shard_000000/tag\.npy: wrong dtype/shape"):
        SequenceDataset(bad, batch_size=2, chunk_len=64)


def test_incomplete_dataset_is_refused(tmp_path):
    cfg = load_config(DatasetConfig, {"seq_len": 64, "n_sequences": 4, "sequences_per_shard": 2, "batch_size": 2})
    synthesize(cfg, tmp_path, progress=False, max_shards=1)
    with pytest.raises(DatasetError, match="incomplete"):
        load_manifest(tmp_path)
