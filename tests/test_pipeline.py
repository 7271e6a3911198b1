"""One pipeline: in both profiles each notebook's parameters name what the notebook before it writes in the run
folder, with nothing to edit, and a missing input names the notebook to run first."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnirl_core.evaluation import EvaluationConfig
from omnirl_core.studies import AblationConfig
from omnirl_core.synthesis import SynthesisConfig
from omnirl_core.training import TrainConfig
from omnirl_core.workbook import MissingArtefact, load_config, repo_path, run_artefact

MODEL_OF_03 = "03_training/run/model.safetensors"  # where notebook 03 writes its model (out_dir / "run")


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_each_notebook_consumes_what_the_one_before_wrote(profile):
    params = repo_path(f"params/{profile}")
    synthesis = load_config(SynthesisConfig, params / "02_synthesis.yaml")
    training = load_config(TrainConfig, params / "03_training.yaml")
    evaluation = load_config(EvaluationConfig, params / "04_evaluation.yaml")
    ablations = load_config(AblationConfig, params / "05_ablations.yaml")

    written = {f"{synthesis.data_dir}/{name}": d for name, d in synthesis.datasets.items()}
    assert training.data.path in written, f"03 trains on {training.data.path}, 02 writes {sorted(written)}"
    data = written[training.data.path]
    assert training.model.ns_max >= (data.ns_max or data.ns) and training.model.na == data.na
    assert training.data.seq_len is None or training.data.seq_len <= data.seq_len
    # the post-training stage continues 03's model on 02's long sequences (D_Long), with the same model
    long = written[training.post_training.data_path]
    assert long.seq_len >= 16 * data.seq_len and long.na == data.na
    assert training.model.ns_max >= (long.ns_max or long.ns)
    assert evaluation.checkpoint == MODEL_OF_03 and "omnirl" in evaluation.agents
    assert ablations.reference_checkpoint == MODEL_OF_03
    if profile == "paper":  # the paper's main model: D_Large on the 8-GPU node; 256 test tasks per ns group
        assert training.data.path == "data/d_large" and data.ns == 16 and data.ns_max == 128
        assert training.launch.nproc_per_node == 8 and training.model.layout == "paper"
        assert evaluation.n_tasks == 256
        assert (long.n_sequences, long.seq_len, long.ns, long.ns_max) == (12288, 524288, 16, 128)  # D_Long


def test_run_artefact_prefers_the_run_folder_and_names_the_notebook_to_run_first(tmp_path):
    (tmp_path / "data" / "d_large").mkdir(parents=True)
    assert run_artefact(tmp_path, "data/d_large", key="data.path", made_by="02_synthesis") == \
        (tmp_path / "data" / "d_large").resolve()
    shipped = run_artefact(tmp_path, "models/omnirl-tiny-bandit", key="checkpoint", made_by="03_training")
    assert shipped == repo_path("models/omnirl-tiny-bandit")  # repository paths still work
    with pytest.raises(MissingArtefact, match=r"checkpoint: 03_training/run/model\.safetensors is not in the run "
                                              r"folder .*notebook 03_training writes it.*--only 03"):
        run_artefact(tmp_path, MODEL_OF_03, key="checkpoint", made_by="03_training")
    with pytest.raises(MissingArtefact, match=r"model\.safetensors does not exist; notebook 03_training writes it"):
        run_artefact(tmp_path, Path("/nonexistent/model.safetensors"), key="checkpoint", made_by="03_training")


def test_the_curriculum_recipe_validates_and_each_stage_starts_from_the_one_before():
    """params/tiny/curriculum: the order scripts/curriculum.sh runs (each stage init_from the previous one's model)."""
    from omnirl_core.synthesis import SynthesisConfig as Synthesis

    folder = repo_path("params/tiny/curriculum")
    script = repo_path("scripts/curriculum.sh").read_text()
    stages = script.split("STAGES=(")[1].split(")")[0].split()
    assert stages[0] == "1_standin_ns1" and stages[-1] == "5_anymdp8"
    previous = None
    for stage in stages:
        cfg = load_config(TrainConfig, folder / f"{stage}.yaml")
        expected = None if previous is None else f"outputs/tiny/curriculum/{previous}/model.safetensors"
        assert cfg.init_from == expected, (stage, cfg.init_from)
        previous = stage
    data = load_config(Synthesis, folder / "5_synthesis_anymdp8.yaml")
    assert load_config(TrainConfig, folder / "5_anymdp8.yaml").data.path == \
        f"outputs/tiny/curriculum/5_synthesis/{next(iter(data.datasets))}"
    for other in folder.glob("*.yaml"):  # the arms of the map that are not in the recipe validate too
        load_config(Synthesis if "synthesis" in other.name else TrainConfig, other)
