"""Ablation studies: validated variants, the synthesise -> train -> measure pipeline, reuse and reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from omnirl_core.studies import ablations as ab
from omnirl_core.studies import cli as studies_cli
from omnirl_core.studies import cross_suite as xs
from omnirl_core.workbook import ConfigError, load_config, repo_path

QUICK = "params/quick/05_ablations.yaml"


def tiny_config(**studies) -> ab.AblationConfig:
    """The quick profile shrunk to seconds: 32 sequences of 64 steps, 4 iterations, 4 test bandits."""
    over = {
        "dataset.n_sequences": 32, "dataset.seq_len": 64, "dataset.sequences_per_shard": 16,
        "dataset.batch_size": 16, "training.steps": 4, "training.chunk_len": 32, "training.data.seq_len": 64,
        "training.data.batch_size": 4, "training.checkpoint_every": 2, "eval_tasks": 4, "eval_steps": 40,
        "workers": 1, "progress": False, "tql": False, "run": [],
    }
    cfg = load_config(ab.AblationConfig, QUICK, overrides=over)
    if studies:
        cfg.studies = {k: ab.StudyConfig(finding=f"finding of {k}", variants=v) for k, v in studies.items()}
    return cfg


def test_profiles_validate_and_every_variant_resolves():
    for profile in ("quick", "paper"):
        cfg = load_config(ab.AblationConfig, repo_path(f"params/{profile}/05_ablations.yaml"))
        assert {"task_count", "tags", "data_strategy", "backbone", "garnet"} <= set(cfg.studies)
        for study in cfg.studies:
            for variant in cfg.studies[study].variants:
                ds, tr = ab.variant_configs(cfg, study, variant)
                assert (ds.ns_max or ds.ns) <= tr.model.ns_max
    cfg = load_config(ab.AblationConfig, QUICK)
    ds, tr = ab.variant_configs(cfg, "backbone", "gsa")
    assert tr.model.backbone == "gsa" and ds == cfg.dataset
    ds, _ = ab.variant_configs(cfg, "tags", "no_tags")
    assert ds.preset == "no_tags"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ({"studies": {"s": {"variants": {"v": {"model.backbone": "gsa"}}}}}, "must start with dataset. or training."),
        ({"studies": {"s": {"variants": {"v": {"dataset.presett": "ad"}}}}}, "presett"),
        ({"studies": {"s": {"variants": {"v": {"training.model.backbone": "lstm"}}}}}, "lstm"),
        ({"studies": {"s": {"variants": {"v": {"dataset.ns": 16}}}}}, "ns_max"),
        ({"studies": {"s": {"variants": {"v": {"dataset.task_source": "garnet"}}}}}, "no Garnet bandit"),
        ({"studies": {"s": {"eval_suite": "anymdp_16", "variants": {"v": {}}}}}, "test suite anymdp_16"),
        ({"run": ["nope"]}, "nope"),
        ({"eval_suite": "frozenlake"}, "anymdp_<ns>"),
    ],
)
def test_bad_variants_are_named(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(ab.AblationConfig, QUICK, overrides=override)
    assert fragment in str(err.value)
    if "studies" in override:
        assert "studies.s.variants.v" in str(err.value)


def test_variants_train_measure_and_are_reused(tmp_path):
    cfg = tiny_config(tags={"dpd": {}, "no_tags": {"dataset.preset": "no_tags"}},
                      backbone={"rwkv7": {}, "gdn": {"training.model.backbone": "gated_deltanet",
                                                      "training.model.gdn_num_heads": 2}})
    logs: list[str] = []
    results = ab.run_studies(cfg, tmp_path, ["tags", "backbone"], log=logs.append)
    assert [r.variant for r in results["tags"]] == ["dpd", "no_tags"]
    # equal datasets are shared: tags/dpd, backbone/rwkv7 and backbone/gdn use one folder, no_tags another
    assert len(list((tmp_path / "data").iterdir())) == 2
    for variants in results.values():
        for r in variants:
            saved = json.loads((tmp_path / r.study / f"{r.variant}.json").read_text())
            assert saved["gain"]["n_tasks"] + saved["gain"]["n_dropped"] == 4
            g = r.gain  # the gain is the per-task mean of Q4 - Q1, inside its own interval
            assert g["gain"][0] == pytest.approx(g["late"][0] - g["early"][0], abs=1e-9)
            assert g["gain"][1] <= g["gain"][0] <= g["gain"][2] and r.env_steps_trained == 4 * 4 * 64
            assert (r.folder / "model.safetensors").is_file()
            loss = saved["context_loss"]  # every variant read on the same sequences, in the measure's bins
            assert loss["edges"] == r.gain["edges"] and len(loss["loss"]) == len(r.gain["edges"]) - 1
            assert loss["sequences"] == cfg.loss_sequences
            np.testing.assert_equal(r.context_loss, loss)  # NaN: a bin of one step on an episode boundary
    assert results["backbone"][1].gain != results["backbone"][0].gain  # another backbone, another model
    # a second run reads the finished variants back instead of retraining
    logs.clear()
    again = ab.run_studies(cfg, tmp_path, ["tags"], log=logs.append)
    assert all("reusing" in line for line in logs) and again["tags"][0].gain == results["tags"][0].gain
    np.testing.assert_equal(again["tags"][0].context_loss, results["tags"][0].context_loss)
    rows = ab.summary_rows(cfg, results)
    text = ab.markdown_summary(rows, {"tags": ab.tql_reference(cfg, "tags")})
    assert "| tags | no_tags | anymdp_1, 40 steps |" in text and "finding of backbone" in text
    best, steps = results["tags"][0].gain["best_gain"], results["tags"][0].gain["steps_99"]
    assert f"| {best[0]:+.3f} [{best[1]:+.3f}, {best[2]:+.3f}] | {steps:,} |" in text
    assert "| tags | TQL-UCB (c=" in text and "| backbone | TQL-UCB" not in text


def test_a_study_can_test_on_its_own_suite(tmp_path):
    cfg = tiny_config(mdp={"anymdp": {"dataset.ns": 16, "training.model.ns_max": 16, "training.data.ns": 16}})
    cfg.studies["mdp"].eval_suite, cfg.studies["mdp"].eval_steps = "anymdp_16", 80
    assert ab.eval_settings(cfg, "mdp") == ("anymdp_16", 80)
    res = ab.run_variant(cfg, "mdp", "anymdp", tmp_path, log=None)
    assert res.gain["steps"] == 80
    rows = ab.summary_rows(cfg, {"mdp": [res]})
    assert rows[0]["suite"] == "anymdp_16" and rows[0]["test_steps"] == 80


def test_equal_variants_share_a_run_and_measurement_is_redone_without_retraining(tmp_path):
    cfg = tiny_config(tags={"dpd": {}}, backbone={"rwkv7": {}})
    first = ab.run_variant(cfg, "tags", "dpd", tmp_path, log=None)
    logs: list[str] = []
    same = ab.run_variant(cfg, "backbone", "rwkv7", tmp_path, log=logs.append)
    assert same.folder == first.folder and "reusing" in logs[0]
    assert json.loads((tmp_path / "backbone" / "rwkv7.json").read_text())["gain"] == first.gain
    stamp = (first.folder / "checkpoint.pt").stat().st_mtime_ns
    (first.folder / "gain.json").unlink()  # e.g. interrupted during the measurement
    again = ab.run_variant(cfg, "tags", "dpd", tmp_path, log=None)
    assert (first.folder / "checkpoint.pt").stat().st_mtime_ns == stamp  # resumed at its last step: no training
    drop = ("seconds",)
    assert {k: v for k, v in again.gain.items() if k not in drop} == {k: v for k, v in first.gain.items()
                                                                     if k not in drop}  # deterministic
    cfg.training.steps = 6
    longer = ab.run_variant(cfg, "tags", "dpd", tmp_path, log=None)
    assert longer.folder != first.folder and longer.env_steps_trained == 6 * 4 * 64


def test_results_of_older_code_or_schema_are_recomputed_not_reused(tmp_path, monkeypatch):
    cfg = tiny_config(tags={"dpd": {}})
    first = ab.run_variant(cfg, "tags", "dpd", tmp_path, log=None)
    ds, tr = ab.variant_configs(cfg, "tags", "dpd")
    keys = (ab.dataset_key(ds), ab.run_key(cfg, "tags", ds, tr))
    assert (tmp_path / "data" / keys[0]).is_dir() and first.folder.name == keys[1]
    # the same configuration under another version of the model code: another run folder, trained again
    monkeypatch.setattr(ab, "code_version", lambda *pkgs: "changed" if "model" in pkgs else "same")
    assert ab.dataset_key(ds) != keys[0]  # "same" is not the real hash either: the data are redone too
    logs: list[str] = []
    again = ab.run_variant(cfg, "tags", "dpd", tmp_path, log=logs.append)
    assert again.folder != first.folder and not any("reusing" in line for line in logs)
    assert (again.folder / "model.safetensors").is_file()
    # another dataset schema changes both keys
    monkeypatch.setattr(ab, "SCHEMA_VERSION", ab.SCHEMA_VERSION + 1)
    assert ab.run_key(cfg, "tags", ds, tr) != again.folder.name


def test_code_version_follows_the_source(tmp_path, monkeypatch):
    assert ab.code_version("world") == ab.code_version("world")
    assert ab.code_version("world") != ab.code_version("synthesis") != ab.code_version("world", "synthesis")

    # a stand-in package tree: code_version hashes the subpackages next to the folder of its own module
    def tree(root: Path, files: dict[str, str]) -> Path:
        for rel, text in {"studies/ablations.py": "", **files}.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        return root

    files = {"world/a.py": "X = 1\n", "world/deep/b.py": "Y = 2\n", "synthesis/c.py": "Z = 3\n"}
    pkg = tree(tmp_path / "one" / "omnirl_core", files)
    copy = tree(tmp_path / "two" / "omnirl_core", files)
    version = ab.code_version.__wrapped__  # uncached: the files change between calls

    def at(root: Path, *names: str) -> str:
        monkeypatch.setattr(ab, "__file__", str(root / "studies" / "ablations.py"))
        return version(*names)

    base, synth = at(pkg, "world"), at(pkg, "synthesis")
    assert len(base) == 12 and at(copy, "world") == base  # the same bytes under the same names: the same version
    (pkg / "world" / "a.py").write_text("X = 10\n")  # same name, other bytes
    changed = at(pkg, "world")
    assert changed != base
    (pkg / "world" / "a.py").write_text("X = 1\n")
    assert at(pkg, "world") == base  # the bytes back: the version back
    (pkg / "world" / "deep" / "b.py").write_text("Y = 2  # edited\n")  # a module in a nested folder
    assert at(pkg, "world") not in (base, changed)
    (pkg / "world" / "deep" / "b.py").write_text("Y = 2\n")
    (pkg / "synthesis" / "c.py").write_text("Z = 4\n")  # another subpackage: only its own version moves
    assert at(pkg, "world") == base and at(pkg, "synthesis") != synth
    (pkg / "world" / "notes.txt").write_text("not source")
    assert at(pkg, "world") == base


@pytest.mark.slow
def test_command_line_runs_one_variant(tmp_path, capsys):
    from omnirl_core.workbook import dump_config

    cfg = tiny_config(tags={"dpd": {}, "no_tags": {"dataset.preset": "no_tags"}})
    path = tmp_path / "abl.yaml"
    dump_config(cfg, path)
    assert studies_cli.main([str(path), "--study", "tags", "--variant", "no_tags", "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "tags" / "no_tags.json").is_file()
    assert not (tmp_path / "run" / "tags" / "dpd.json").exists()
    with pytest.raises(SystemExit):
        studies_cli.main([str(path), "--study", "tags", "--variant", "nope"])
    assert studies_cli.main([str(path), "--out", str(tmp_path / "run")]) == 0
    assert "| tags | dpd |" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("where,started", [({"devices": [0, 1]}, ["device 0", "device 1"]),
                                           ({"cpu_processes": 2}, ["a CPU process"] * 2)])
def test_variants_spread_over_devices_run_in_parallel_and_are_read_back(tmp_path, where, started):
    from omnirl_core.workbook import dump_config

    cfg = tiny_config(tags={"dpd": {}, "no_tags": {"dataset.preset": "no_tags"}})
    for key, value in where.items():
        setattr(cfg, key, value)
    path = dump_config(cfg, tmp_path / "05.yaml")
    logs: list[str] = []
    given = None if "cpu_processes" in where else path  # None: the command line's way, cfg written to the run
    ab.spread_variants(cfg, given, tmp_path / "run", ["tags"], log=logs.append)
    assert given or (tmp_path / "run" / "ablations.config.yaml").is_file()
    assert sorted(line for line in logs if "started" in line) == [f"tags/dpd: started on {started[0]}",
                                                                  f"tags/no_tags: started on {started[1]}"]
    logs.clear()
    results = ab.run_studies(cfg, tmp_path / "run", ["tags"], log=logs.append)
    assert all("reusing" in line for line in logs) and len(results["tags"]) == 2
    # a variant that fails stops the spread with its own error
    cfg.studies["tags"].variants["broken"] = {"training.init_from": str(tmp_path / "nonexistent.pt")}
    path = dump_config(cfg, tmp_path / "05b.yaml")
    with pytest.raises(RuntimeError, match=r"(?s)tags/broken failed on .*nonexistent\.pt does not exist"):
        ab.spread_variants(cfg, path, tmp_path / "run", ["tags"], log=None)


# ---------------------------------------------------------------------------------------------- further suites
def further_config(also: list[str]) -> ab.AblationConfig:
    """One bandit-trained variant whose model takes 16 observation ids, tested on anymdp_1 and on ``also``."""
    cfg = tiny_config(tags={"dpd": {"training.model.ns_max": 16}})
    cfg.eval_steps, cfg.also_suites = 80, also
    cfg.pendulum_samples, cfg.pendulum_reference_episodes = 5, 4
    return cfg


def test_profiles_score_on_further_suites():
    import yaml

    paper = load_config(ab.AblationConfig, repo_path("params/paper/05_ablations.yaml"))
    suites_04 = yaml.safe_load(repo_path("params/paper/04_evaluation.yaml").read_text())["suites"]
    assert paper.also_suites == suites_04
    assert xs.further_suites(paper, "garnet") == [s for s in suites_04 if s != "anymdp_16"]  # no suite twice
    quick = load_config(ab.AblationConfig, QUICK)
    assert xs.further_suites(quick, "tags") == []  # anymdp_1 is its own test suite
    assert xs.further_suites(quick, "garnet") == ["garnet_16"]


def test_variants_are_scored_on_further_suites_and_skip_what_does_not_fit(tmp_path):
    cfg = further_config(["anymdp_1", "frozenlake", "pendulum_g9.8"])
    logs: list[str] = []
    res = ab.run_variant(cfg, "tags", "dpd", tmp_path, log=logs.append)
    assert list(res.suites) == ["frozenlake", "pendulum_g9.8"]  # anymdp_1 is the test suite: measured once
    fl = res.suites["frozenlake"]["gain"]
    assert fl["steps"] == 80 and fl["n_tasks"] + fl["n_dropped"] == 4
    assert fl["gain"][0] == pytest.approx(fl["late"][0] - fl["early"][0], abs=1e-9)
    why = res.suites["pendulum_g9.8"]["skipped"]
    assert why == "the model takes at most 16 observation ids, the suite has 60"
    assert any("pendulum_g9.8 skipped" in line for line in logs)
    saved = json.loads((tmp_path / "tags" / "dpd.json").read_text())
    assert saved["suites"] == res.suites
    # the same protocol as on the test suite: the frozenlake summary equals online_gain of the saved model
    import torch

    from omnirl_core.evaluation.agents import OmniRLAgent
    from omnirl_core.evaluation.incontext import online_gain
    from omnirl_core.evaluation.models import load_model

    with torch.no_grad():
        direct = online_gain(xs.test_suite(cfg, "frozenlake"), OmniRLAgent(load_model(
            res.folder / "model.safetensors"), temperature=cfg.temperature), 80, seed=cfg.seed)
    assert direct["late"] == fl["late"] and direct["gain"] == fl["gain"]


def test_a_changed_suite_list_measures_the_new_suites_and_reuses_the_training(tmp_path):
    cfg = further_config(["frozenlake"])
    first = ab.run_variant(cfg, "tags", "dpd", tmp_path, log=None)
    ckpt, kept = first.folder / "checkpoint.pt", first.folder / "suites" / "frozenlake.json"
    stamps = (ckpt.stat().st_mtime_ns, kept.stat().st_mtime_ns)
    cfg.also_suites = ["frozenlake_slippery", "frozenlake"]
    logs: list[str] = []
    again = ab.run_variant(cfg, "tags", "dpd", tmp_path, log=logs.append)
    assert again.folder == first.folder and "reusing" in logs[0]  # the suite list is not part of the run's key
    assert (ckpt.stat().st_mtime_ns, kept.stat().st_mtime_ns) == stamps  # no training, frozenlake read back
    assert list(again.suites) == ["frozenlake_slippery", "frozenlake"]
    assert again.suites["frozenlake"] == first.suites["frozenlake"] and "gain" in again.suites["frozenlake_slippery"]
    assert any("frozenlake_slippery last bin" in line for line in logs)
    assert json.loads((tmp_path / "tags" / "dpd.json").read_text())["suites"] == again.suites
    # a result measured under other settings is not reused; a dropped suite is not reported
    record = json.loads(kept.read_text())
    record["test"]["steps"], record["result"]["gain"]["q4"] = 999, [9.0, 9.0, 9.0]
    kept.write_text(json.dumps(record))
    cfg.also_suites = ["frozenlake"]
    third = ab.run_variant(cfg, "tags", "dpd", tmp_path, log=None)
    assert list(third.suites) == ["frozenlake"]
    measured, before = third.suites["frozenlake"]["gain"], first.suites["frozenlake"]["gain"]
    assert measured.pop("seconds") != before["seconds"]  # measured again (and deterministic)
    assert measured == {k: v for k, v in before.items() if k != "seconds"}
    assert ckpt.stat().st_mtime_ns == stamps[0]


def _result(study: str, variant: str, folder: str, suites: dict, q4: float = 0.5) -> ab.VariantResult:
    gain = {"q1": [0.1, 0.0, 0.2], "q4": [q4, q4 - 0.1, q4 + 0.1], "gain": [q4 - 0.1, 0.0, 0.8], "mean": 0.3}
    return ab.VariantResult(study, variant, gain, 1.0, 1.0, 100, Path(folder), {}, suites)


def test_the_table1_report_has_a_row_per_model_and_a_column_per_suite():
    cfg = tiny_config(tags={"dpd": {}, "no_tags": {"dataset.preset": "no_tags"}},
                      data_strategy={v: {} for v in ("dpd", "ad", "ad_eps", "dpt")})
    cfg.also_suites = ["frozenlake", "pendulum_g9.8"]
    skip = {"skipped": "the model takes at most 1 observation ids, the suite has 60"}
    scored = {"gain": _result("x", "x", "x", {}).gain}
    further = {"frozenlake": scored, "pendulum_g9.8": skip}
    results = {"data_strategy": [_result("data_strategy", v, f"runs/{v}", further, q4=0.25 * i)
                                 for i, v in enumerate(("dpd", "ad", "ad_eps", "dpt"))],
               "tags": [_result("tags", "dpd", "runs/dpd", further), _result("tags", "no_tags", "runs/nt", further)]}
    suites, rows = xs.suite_rows(cfg, results, ("data_strategy", "tags"))
    assert suites == ["anymdp_1", "frozenlake", "pendulum_g9.8"]
    assert [r["label"] for r in rows] == ["DPD (OmniRL)", "AD", "AD-ε", "DPT", "OmniRL without tags"]
    assert rows[0]["studies"] == ["data_strategy", "tags"]  # one model, one row
    text = xs.suite_table(cfg, results, ("data_strategy", "tags"))
    lines = text.splitlines()
    assert lines.count("| model | anymdp_1 | frozenlake | pendulum_g9.8 |") == 2  # score and gain tables
    assert "| AD | 0.250 [0.150, 0.350] | 0.500 [0.400, 0.600] | skipped |" in lines
    assert "| OmniRL without tags | +0.400 [+0.000, +0.800] | +0.400 [+0.000, +0.800] | skipped |" in lines
    assert not any(line.startswith("| paper") for line in lines)  # another measure: below the table, not a row
    assert ("Not the same measure, for scale only: the paper's OmniRL best score within 10,000 episodes (Table 1): "
            "anymdp_1 0.825, frozenlake 0.998, pendulum_g9.8 0.734.") in lines
    assert ("- pendulum_g9.8, DPD (OmniRL), AD, AD-ε, DPT, OmniRL without tags: the model takes at most 1 "
            "observation ids, the suite has 60") in lines
    assert "- tags: finding of tags" in lines
    assert xs.suite_table(cfg, results, ("garnet",)) is None  # a study that did not run: no table


# ---------------------------------------------------------------------------------------------- seeds
@pytest.mark.slow
def test_seeds_multiply_trainings_and_seed_0_is_the_single_seed_run(tmp_path):
    cfg = tiny_config(tags={"dpd": {}})
    single = ab.run_studies(cfg, tmp_path, log=None)["tags"][0]
    ds, tr = ab.variant_configs(cfg, "tags", "dpd")
    assert single.folder.name == ab.run_key(cfg, "tags", ds, tr) and single.seed == 0  # the key of before
    row = ab.summary_rows(cfg, {"tags": [single]})[0]  # one seed: the run's own numbers, interval over tasks
    assert (row["seeds"], row["q4"], row["gain_low"], row["gain_per_seed"]) == (
        1, single.gain["late"][0], single.gain["gain"][1], [single.gain["gain"][0]])
    cfg.seeds = 2
    logs: list[str] = []
    pooled = ab.run_studies(cfg, tmp_path, log=logs.append)["tags"][0]
    assert logs[0].startswith("tags/dpd: reusing") and sum("trained" in line for line in logs) == 1
    assert [r.seed for r in pooled.runs] == [0, 1] and pooled.runs[0].gain == single.gain
    assert len({r.folder for r in pooled.runs}) == 2 and len(list((tmp_path / "data").iterdir())) == 2
    for seed, run in enumerate(pooled.runs):
        saved = json.loads((run.folder / "gain.json").read_text())
        assert saved["training"]["seed"] == cfg.training.seed + seed
        assert saved["dataset"]["seed"] == cfg.dataset.seed + seed
    assert pooled.gain["per_seed"]["gain"] == [r.gain["gain"][0] for r in pooled.runs]
    assert pooled.gain["gain"][0] == pytest.approx(sum(r.gain["gain"][0] for r in pooled.runs) / 2)
    assert pooled.gain["n_seeds"] == 2 and pooled.final_loss == pytest.approx(
        sum(r.final_loss for r in pooled.runs) / 2)
    text = ab.markdown_summary(ab.summary_rows(cfg, {"tags": [pooled]}))
    assert "| tags | dpd | anymdp_1, 40 steps | 2 |" in text
    cfg.seed_dataset = False  # only the training seed varies: seed 1 trains on seed 0's dataset
    ds1, tr1 = ab.variant_configs(cfg, "tags", "dpd", seed=1)
    assert ab.dataset_key(ds1) == ab.dataset_key(ds) and tr1.seed == tr.seed + 1


@pytest.mark.slow
def test_finished_seeds_resume_from_the_kept_results_under_other_code(tmp_path, monkeypatch):
    cfg = tiny_config(tags={"dpd": {}, "no_tags": {"dataset.preset": "no_tags"}})
    cfg.seeds, cfg.results_dir = 2, str(tmp_path / "kept")
    first = ab.run_studies(cfg, tmp_path / "a", log=None)["tags"]
    kept = sorted(p.name for p in (tmp_path / "kept" / "tags").iterdir())
    assert kept == [f"{v}.seed{s}.{ext}" for v in ("dpd", "no_tags") for s in (0, 1) for ext in ("json", "metrics.csv")]
    # a fresh run folder (a new checkout) under edited code: every seed is read back, nothing is synthesised
    monkeypatch.setattr(ab, "code_version", lambda *pkgs: "edited")
    logs: list[str] = []
    again = ab.run_studies(cfg, tmp_path / "b", log=logs.append)["tags"]
    assert sum("archived result" in line for line in logs) == 4 and not (tmp_path / "b" / "data").exists()
    assert [r.gain for r in again] == [r.gain for r in first]
    assert [[s.gain for s in r.runs] for r in again] == [[s.gain for s in r.runs] for r in first]
    # an interrupted study: only the (variant, seed) whose result is missing is trained
    (tmp_path / "kept" / "tags" / "no_tags.seed1.json").unlink()
    logs.clear()
    third = ab.run_studies(cfg, tmp_path / "c", log=logs.append)["tags"]
    assert [line.split(":")[0] for line in logs if "trained" in line] == ["tags/no_tags seed 1"]
    assert third[1].runs[1].gain["per_task"] == first[1].runs[1].gain["per_task"]  # deterministic
    assert (tmp_path / "kept" / "tags" / "no_tags.seed1.json").is_file()
    # the report reads what is finished and trains nothing
    (tmp_path / "kept" / "tags" / "dpd.seed1.json").unlink()
    report = ab.run_studies(cfg, tmp_path / "d", log=None, reuse_only=True)["tags"]
    assert [len(r.runs) or 1 for r in report] == [1, 2] and not (tmp_path / "d" / "data").exists()


@pytest.mark.slow
def test_command_line_runs_a_seed_keeps_it_and_reports_without_training(tmp_path, capsys):
    from omnirl_core.workbook import dump_config

    path = dump_config(tiny_config(tags={"dpd": {}}), tmp_path / "abl.yaml")
    kept, out = tmp_path / "kept", str(tmp_path / "run")
    assert studies_cli.main([str(path), "--study", "tags", "--variant", "dpd", "--seed", "1", "--set", "seeds=2",
                    "--results", str(kept), "--out", out]) == 0
    assert (tmp_path / "run" / "tags" / "dpd.seed1.json").is_file() and (kept / "tags" / "dpd.seed1.json").is_file()
    assert not (tmp_path / "run" / "tags" / "dpd.json").exists()  # seed 0 not run
    with pytest.raises(SystemExit):
        studies_cli.main([str(path), "--study", "tags", "--variant", "dpd", "--seed", "2", "--set", "seeds=2"])
    capsys.readouterr()
    assert studies_cli.main([str(path), "--all", "--set", "seeds=2", "--results", str(kept),
                             "--out", str(tmp_path / "new"), "--report"]) == 0
    assert "| tags | dpd | anymdp_1, 40 steps | 1 |" in capsys.readouterr().out  # the one finished seed
    assert not (tmp_path / "new" / "data").exists()


def test_the_archive_key_ignores_the_code_and_a_field_added_at_its_default():
    import copy

    from omnirl_core.studies import archive
    from omnirl_core.workbook.config import config_to_dict

    cfg = tiny_config(tags={"dpd": {}})
    ds, tr = ab.variant_configs(cfg, "tags", "dpd")
    ident = ab._run_ident(cfg, "tags", ds, tr)
    defaults = {"dataset": config_to_dict(type(ds)()), "training": config_to_dict(ab._default_training())}
    assert archive.result_key(ident, defaults) == ab.archive_key(cfg, "tags", ds, tr)
    later, later_defaults = copy.deepcopy(ident), copy.deepcopy(defaults)
    later["code"] = "edited"
    later["training"]["model"]["new_knob"] = later_defaults["training"]["model"]["new_knob"] = 0.0
    assert archive.result_key(later, later_defaults) == archive.result_key(ident, defaults)
    later["training"]["model"]["new_knob"] = 0.1  # set away from its default: another result
    assert archive.result_key(later, later_defaults) != archive.result_key(ident, defaults)
    assert ab.archive_key(cfg, "tags", *ab.variant_configs(cfg, "tags", "dpd", seed=1)) != ab.archive_key(
        cfg, "tags", ds, tr)
    cfg.eval_tasks = 5  # another test: another result
    assert ab.archive_key(cfg, "tags", ds, tr) != archive.result_key(ident, defaults)


def _two_way(rng, s: int, t: int, seed_sd: float, task_sd: float, noise_sd: float):
    return (seed_sd * rng.standard_normal((s, 1)) + task_sd * rng.standard_normal((1, t))
            + noise_sd * rng.standard_normal((s, t)))


def _closed_form_sd(y) -> float:
    """SD of the crossed bootstrap's mean, by hand: sum a^2 / S^2 + sum b^2 / T^2 + sum e^2 / (S T)^2."""
    import numpy as np

    s, t = y.shape
    a, b = y.mean(1) - y.mean(), y.mean(0) - y.mean()
    e = y - y.mean() - a[:, None] - b[None, :]
    return float(np.sqrt((a ** 2).sum() / s ** 2 + (b ** 2).sum() / t ** 2 + (e ** 2).sum() / (s * t) ** 2))


def test_the_interval_over_seeds_and_tasks_matches_its_closed_form_and_rejects_wrong_resampling():
    import numpy as np

    from omnirl_core.studies import seeds as sd

    rng = np.random.default_rng(7)
    for seed_sd, task_sd in ((0.3, 0.05), (0.02, 0.3), (0.1, 0.1)):
        y = _two_way(rng, 3, 32, seed_sd, task_sd, 0.1)
        want = _closed_form_sd(y)
        assert np.std(sd.crossed_bootstrap(y)) == pytest.approx(want, rel=0.05)

        def nested(y, n=sd.N_BOOT):  # broken: tasks drawn anew within every seed (3 x 32 "independent" tasks)
            r = np.random.default_rng(0)
            si = r.integers(0, y.shape[0], (n, y.shape[0]))
            ti = r.integers(0, y.shape[1], (n, y.shape[0], y.shape[1]))
            return y[si[:, :, None], ti].mean(axis=(1, 2))

        def cells(y, n=sd.N_BOOT):  # broken: every (seed, task) cell an independent observation
            flat = y.ravel()
            return flat[np.random.default_rng(0).integers(0, flat.size, (n, flat.size))].mean(axis=1)

        for broken in (nested, cells):
            if broken is cells or task_sd > seed_sd:  # nested misses the task part: visible where it dominates
                assert np.std(broken(y)) / want < 0.7, (broken.__name__, seed_sd, task_sd)
    # the interval widens with the spread between seeds and stays put when only seed 0 is shifted
    y = _two_way(rng, 3, 32, 0.05, 0.1, 0.1)
    width = [np.ptp(np.percentile(sd.crossed_bootstrap(y + k * np.array([[-1], [0], [1]])), [2.5, 97.5]))
             for k in (0.0, 0.1, 0.3)]
    assert width[0] < width[1] < width[2]
    only_seeds = np.array([[0.1], [0.4], [0.7]]) * np.ones((3, 8))  # all the spread is between seeds
    assert np.std(sd.crossed_bootstrap(only_seeds)) == pytest.approx(np.sqrt(0.18) / 3, rel=0.05)


def test_pool_seeds_by_hand():
    import numpy as np

    from omnirl_core.studies import seeds as sd

    per = np.array([[[0.1, 0.2, 0.3, 0.5], [0.0, 0.1, 0.1, 0.2]],
                    [[0.2, 0.2, 0.4, 0.6], [np.nan, 0.1, 0.2, 0.3]],  # a run without an episode in Q1: dropped
                    [[0.3, 0.4, 0.4, 0.4], [0.1, 0.2, 0.3, 0.4]]])
    gains = [{"q4": [0.0] * 3, "gain": [float(i)] * 3, "mean": 0.0, "per_task": p.tolist(), "steps": 40}
             for i, p in enumerate(per)]
    out = sd.pool_seeds(gains)
    kept = per[[0, 0, 1, 2, 2], [0, 1, 0, 0, 1]]
    assert out["q4"][0] == pytest.approx(kept[:, 3].mean()) and out["q1"][0] == pytest.approx(kept[:, 0].mean())
    assert out["gain"][0] == pytest.approx((kept[:, 3] - kept[:, 0]).mean())
    assert out["q4"][1] < out["q4"][0] < out["q4"][2] and out["n_dropped"] == 1 and out["n_tasks"] == 2
    assert out["per_seed"]["gain"] == [0.0, 1.0, 2.0] and out["seeds"] == [0, 1, 2] and out["n_seeds"] == 3
    assert out["best_bin"] == 4 and out["best_gain"][0] == pytest.approx(out["gain"][0])  # the last bin is the best
    alone = sd.pool_seeds(gains[:1])
    assert {k: alone[k] for k in gains[0]} == gains[0] and alone["interval"] == "t over tasks"
    with pytest.raises(ValueError, match="per-task"):
        sd.pool_seeds([{k: v for k, v in g.items() if k != "per_task"} for g in gains])
    skip = {"skipped": "too many observation ids"}
    suites = sd.pool_suites([{"garnet_16": {"gain": g}, "pendulum_g9.8": skip} for g in gains], [0, 1, 2])
    assert suites["garnet_16"]["gain"] == out and suites["pendulum_g9.8"] == skip


def test_adaptation_reads_the_best_bin_and_the_first_bin_within_99_percent():
    """The best in-context gain is the best bin minus the first (the paper's task-count measure), not the last bin
    minus the first; steps to adapt are the first step of the first bin at 99% of that best."""
    import numpy as np

    from omnirl_core.evaluation.incontext import adaptation, segment_summary

    edges = [0, 1, 2, 4, 8, 16]
    seg = np.array([[0.0, 0.5, 0.9, 1.0, 0.6], [0.2, 0.5, 0.9, 1.0, 0.6], [0.1, 0.4, 0.8, 1.0, 0.6]])
    out = segment_summary(seg, edges)
    assert out["best_bin"] == 4 and out["steps_99"] == 5  # bin 4 holds steps 5-8 (edges 4..7, 0-based)
    assert out["best_gain"][0] == pytest.approx(0.9) and out["gain"][0] == pytest.approx(0.5)
    assert adaptation([0.0, 0.995, 1.0], [0, 10, 20, 40]) == (2, 11)  # 0.995 is within 1% of 1.0: its bin
    assert adaptation([0.3, 0.2], None) == (0, None)


def test_context_loss_falls_for_a_model_that_learns_in_context_and_is_off_at_zero():
    """The shipped bandit model's label loss on DPD bandit sequences falls along the context (it learns in
    context); the same sequences serve every model; ``loss_sequences: 0`` measures nothing."""
    from omnirl_core.evaluation import load_shipped
    from omnirl_core.studies import context_loss as cl

    model = load_shipped("models/omnirl-tiny-bandit")[0]
    cfg = tiny_config(tags={"dpd": {}})
    cfg.eval_steps, cfg.loss_sequences = 400, 4
    curve = cl.context_loss(cfg, "tags", model, 128)
    assert curve["sequences"] == 4 and curve["edges"][-1] == 400 and len(curve["loss"]) == len(curve["edges"]) - 1
    assert curve["loss"][-1] < curve["loss"][0] - 0.2, curve["loss"]
    assert cl._sequences(400, 4, 1, 5) is cl._sequences(400, 4, 1, 5)
    pooled = cl.pool_context_loss([curve, {**curve, "loss": [x + 1 for x in curve["loss"]]}, None])
    assert pooled["seeds"] == 2 and pooled["loss"][0] == pytest.approx(curve["loss"][0] + 0.5)
    cfg.loss_sequences = 0
    assert cl.context_loss(cfg, "tags", model, 128) is None


def test_cross_suite_tables_are_grouped_by_the_studies_table_titles():
    """Notebook 05's cross-suite tables come from the file: studies with one ``table`` title share a table, a
    study without one has its own, titled by its name."""
    cfg = load_config(ab.AblationConfig, QUICK)
    groups = xs.table_groups(cfg)
    assert groups["Data strategies and tags"] == ["tags", "data_strategy"]
    assert groups["Trained on AnyMDP or on Garnet"] == ["garnet"]
    assert sum(len(v) for v in groups.values()) == len(cfg.studies)
    cfg.studies["extra"] = ab.StudyConfig(variants={"base": {}})
    assert xs.table_groups(cfg)["extra"] == ["extra"]
    assert xs.table_groups(cfg, ["garnet"]) == {"Trained on AnyMDP or on Garnet": ["garnet"]}
