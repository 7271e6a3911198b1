"""Golden data: an unintended change of the data stream or of the training stream fails here.

The synthesis of a tiny dataset is pinned by the sha256 of every array, for each engine (integers and
float32 rewards drawn by seeded generators: the same bytes on every machine); a tiny training run (on that dataset,
through the file reader) by its losses and, per tensor, the sum and the norm of its final weights, compared within a
tolerance, since float arithmetic may differ in the last bits across CPUs and BLAS builds.

A change of the data or the training on purpose updates the file, with the reason in the commit:

    .venv/bin/python tests/test_golden.py --update
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from omnirl_core.synthesis import STEP_FIELDS, DatasetConfig, load_dataset_arrays, synthesize  # noqa: E402
from omnirl_core.workbook import load_config  # noqa: E402

GOLDEN = ROOT / "tests" / "data" / "golden.json"
ENGINES = ["numba", "numpy"]
ARRAYS = STEP_FIELDS + ("learner_params", "ns", "na", "task_seed", "task_index")
TRAIN = {
    "seed": 0, "steps": 4, "chunk_len": 16, "log_every": 1, "checkpoint_every": 4, "torch_threads": 1,
    "model": {"backbone": "rwkv7", "layout": "compact", "ns_max": 8, "na": 5, "hidden_size": 16, "num_layers": 1,
              "intermediate_size": 32, "head_dim": 8, "chunk_size": 8, "backend": "torch"},
    "data": {"batch_size": 2, "seq_len": 48},
    "optim": {"lr": 3e-3, "warmup_steps": 1},
    "loss": {"ramp_steps": 16},
}


def dataset_config(engine: str) -> DatasetConfig:
    return load_config(DatasetConfig, {"seed": 11, "ns": 8, "na": 5, "seq_len": 48, "n_sequences": 6,
                                       "sequences_per_shard": 3, "batch_size": 3, "engine": engine})


def dataset_digests(folder: Path) -> dict[str, str]:
    arrays = load_dataset_arrays(folder)
    return {k: hashlib.sha256(np.ascontiguousarray(arrays[k]).tobytes()).hexdigest() for k in ARRAYS}


def training_summary(data_dir: Path, out: Path) -> dict:
    import torch

    from omnirl_core.training import TrainConfig, read_metrics, train

    cfg = load_config(TrainConfig, TRAIN, overrides={"data.path": str(data_dir)})
    result = train(cfg, out, progress=False)
    weights = {name: [float(t.double().sum()), float(t.double().norm())]
               for name, t in result.model.state_dict().items() if torch.is_floating_point(t)}
    return {"loss": [float(r["loss"]) for r in read_metrics(out)], "weights": weights}


def compute() -> dict:
    out: dict = {"dataset": {}, "training": None}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ENGINES:
            folder = Path(tmp) / engine
            synthesize(dataset_config(engine), folder, progress=False)
            out["dataset"][engine] = dataset_digests(folder)
        out["training"] = training_summary(Path(tmp) / "numba", Path(tmp) / "run")
    return out


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("engine", ENGINES)
def test_the_tiny_dataset_is_byte_for_byte_the_golden_one(golden, tmp_path, engine):
    synthesize(dataset_config(engine), tmp_path, progress=False)
    got, want = dataset_digests(tmp_path), golden["dataset"][engine]
    changed = [k for k in ARRAYS if got[k] != want[k]]
    assert not changed, (f"the {engine} data stream changed in {changed}; if on purpose, run "
                         "`.venv/bin/python tests/test_golden.py --update` and give the reason in the commit")


def test_the_tiny_training_run_follows_the_golden_stream(golden, tmp_path):
    synthesize(dataset_config("numba"), tmp_path / "data", progress=False)
    got, want = training_summary(tmp_path / "data", tmp_path / "run"), golden["training"]
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-4, err_msg="the training losses changed")
    assert set(got["weights"]) == set(want["weights"])
    for name, (total, norm) in want["weights"].items():
        np.testing.assert_allclose(got["weights"][name], [total, norm], rtol=1e-4, atol=1e-6,
                                   err_msg=f"{name}: the trained weights changed")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit(__doc__)
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
