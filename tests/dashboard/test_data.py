"""The dashboard's logic without Streamlit: counts, commands, importance, curves, MLflow links."""

from __future__ import annotations

import json
import shlex

import pytest

from mtsearch.cli import build_parser
from mtsearch.config import load_config, make_config, parse_set
from mtsearch.dashboard import data as D
from tests.dashboard.synthetic import configurations, write_sweep

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def synthetic(tmp_path):
    return D.load_sweep(write_sweep(tmp_path / "runs", "synthetic"))


def test_counts_agree_between_the_study_and_the_run_directories(synthetic, smoke_root):
    assert synthetic.counts_from == "study"
    assert {k: synthetic.counts[k] for k in D.COUNT_KEYS} == D._dir_counts(synthetic.sweep_dir)
    assert synthetic.counts["done"] == len(configurations())
    smoke = D.load_sweep(smoke_root / "sweeps" / "smoke")
    assert smoke.counts["done"] == 2 and D._dir_counts(smoke.sweep_dir) == dict(
        done=2, pruned=0, failed=0, running=0
    )
    assert smoke.wall_seconds > 0 and smoke.best == pytest.approx(
        smoke.results.configurations["overall_mean"].max()
    )


def test_a_running_trial_is_counted_and_changes_the_signature(synthetic):
    sig = D.signature(synthetic.sweep_dir)
    rd = synthetic.sweep_dir / "trials" / "t0099-s0"
    rd.mkdir()
    (rd / "trial.json").write_text(
        json.dumps({"trial": 99, "seed": 0, "params": {"lr": 1e-4}, "params_key": "x"})
    )
    assert D._dir_counts(synthetic.sweep_dir)["running"] == 1
    assert D.signature(synthetic.sweep_dir) != sig


def test_the_command_rebuilds_the_run_config_of_every_smoke_run(smoke_root):
    """The card's command, parsed as the CLI parses it, gives the very config the sweep trained."""
    d = D.load_sweep(smoke_root / "sweeps" / "smoke")
    for _, run in d.results.runs.iterrows():
        cmd = D.reproduce_command(d.meta, run["params"], int(run["seed"]))
        args = build_parser().parse_args(shlex.split(cmd)[1:])
        rebuilt = load_config(None, parse_set(args.set))
        trained = load_config(d.sweep_dir / "trials" / run["run"] / "config.yaml")
        assert rebuilt.config_hash() == trained.config_hash() == run["config_hash"]
        assert rebuilt.seed == trained.seed == run["seed"]


def test_command_values_survive_yaml_quoting():
    meta = {"space": {"base": {"model": "tiny", "tasks": ["sst", "sts"], "task_dropout": {"sts": 0.3},
                               "schedule": "multistep", "schedule_milestones": [0.5, 0.75], "name": "true"}}}  # fmt: skip
    cmd = D.reproduce_command(
        meta, {"lr": 3e-5, "sampler": "temperature", "sampler_args.temperature": 2.0}, 3
    )
    values = parse_set(build_parser().parse_args(shlex.split(cmd)[1:]).set)
    cfg = make_config(values)
    assert cfg.tasks == ("sst", "sts") and cfg.task_dropout == {"sts": 0.3} and cfg.name == "true"
    assert cfg.lr == 3e-5 and cfg.sampler_args == {"temperature": 2.0} and cfg.seed == 3
    assert cfg.schedule_milestones == (0.5, 0.75)


def test_importance_finds_the_dimensions_that_drive_each_score(synthetic):
    imp = D.importance(synthetic, "fanova")
    assert imp.message is None and imp.trials == len(configurations())
    assert imp.left_out == ["sampler_args.temperature"]  # conditional: not in every trial
    top = {m: max(v, key=v.get) for m, v in imp.values.items()}
    assert top == {"overall": "lr", "sst": "lr", "para": "pooling", "sts": "lr"}
    assert sum(imp.values["overall"].values()) == pytest.approx(1.0)
    ped = D.importance(synthetic, "ped-anova")
    assert max(ped.values["overall"], key=ped.values["overall"].get) == "lr"
    frame = D.importance_frame(imp)
    assert set(frame["metric"]) == {"overall", "sst", "para", "sts"}


def test_importance_without_a_study_uses_the_results(synthetic):
    (synthetic.sweep_dir / "study.db").unlink()
    d = D.load_sweep(synthetic.sweep_dir)
    assert d.counts_from == "run directories"
    imp = D.importance(d)
    assert max(imp.values["overall"], key=imp.values["overall"].get) == "lr"


def test_importance_with_fewer_than_two_trials(tmp_path):
    import optuna

    sd = write_sweep(tmp_path / "runs", "one")
    study = D.open_study(sd)
    keep = study.trials[0]
    optuna.delete_study(study_name="one", storage=f"sqlite:///{sd / 'study.db'}")
    fresh = optuna.create_study(
        study_name="one", storage=f"sqlite:///{sd / 'study.db'}", direction="maximize"
    )
    fresh.add_trial(keep)
    imp = D.importance(D.load_sweep(sd))
    assert (
        imp.values is None
        and imp.message == "Importance needs at least 2 completed trials; this sweep has 1."
    )


def test_ablation_marks_the_levels_that_are_worse_than_the_best(synthetic):
    ab = D.ablation_for(synthetic, "lr")
    overall = ab[ab["metric"] == "overall"]
    assert overall["is_best"].sum() == 1
    best = overall[overall["is_best"]].iloc[0]["level"]
    assert best == overall["level"].iloc[-1]  # levels in numeric order, the largest lr is best
    assert overall[~overall["is_best"]]["distinguishable"].all()  # lr's effect is far above the noise
    sampler = D.ablation_for(synthetic, "sampler")
    assert not sampler[sampler["metric"] == "overall"]["distinguishable"].any()  # sampler does nothing
    assert D.condition_text(synthetic, "sampler_args.temperature") == "sampler = temperature"


def test_curves_and_cosines_from_metrics_files(synthetic):
    frame, cos = D.curves(synthetic)
    runs = 2 * len(configurations())
    assert len(frame) == runs * 2 * 4  # 2 evaluations x (overall + 3 tasks)
    assert len(cos) == runs * 2 * 3 and set(cos["pair"]) == {"sst|para", "sst|sts", "para|sts"}
    assert set(frame.loc[frame["sampler"] == "round_robin", "sampler_args.temperature"]) == {D.NA}


def test_mlflow_links_point_at_each_trials_run(smoke_root, monkeypatch):
    monkeypatch.setenv("MTSEARCH_RUNS", str(smoke_root))
    d = D.load_sweep(smoke_root / "sweeps" / "smoke")
    table = D.runs_table(d, "http://127.0.0.1:5999")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_root / 'mlflow.db'}")
    for _, r in table.iterrows():
        rid = r["mlflow"].rsplit("/", 1)[-1]
        run = client.get_run(rid)
        assert run.data.tags["sweep"] == "smoke" and run.data.tags["trial"] == str(r["trial"])
        assert run.data.tags["seed"] == str(r["seed"])
        assert r["mlflow"] == f"http://127.0.0.1:5999/#/experiments/{run.info.experiment_id}/runs/{rid}"


def test_predict_detailed_writes_the_cache_the_errors_view_reads(smoke_root, tmp_path, dash_env, capsys):
    import shutil

    from mtsearch.cli import main
    from mtsearch.dashboard import predictions as P

    dash_env(smoke_root)
    d = D.load_sweep(smoke_root / "sweeps" / "smoke")
    src = d.sweep_dir / "trials" / D.runs_with_checkpoint(d)[-1]
    run = tmp_path / src.name  # a copy: the app tests compute their own
    shutil.copytree(src, run)
    assert not P.is_current(run)
    assert main(["predict", str(run), "--detailed", "--limit", "30"]) == 0
    assert capsys.readouterr().out.strip() == str(P.detailed_path(run))
    assert P.is_current(run)
    meta, df = P.read_detailed(run)
    assert meta["limit"] == 30 and meta["tasks"] == ["sst", "para", "sts"]
    assert df.groupby("task").size().to_dict() == {"sst": 30, "para": 30, "sts": 30}
    assert set(df[df.task == "sst"]["pred"]) <= {0, 1, 2, 3, 4}
    assert set(df[df.task == "para"]["pred"]) <= {0, 1}
    assert df["sentence1"].str.len().min() > 0 and df[df.task == "sst"]["sentence2"].isna().all()
    assert P.sst_confusion(df).to_numpy().sum() == 30
    fp, fn = P.qqp_errors(df)
    para = df[df.task == "para"]
    assert len(fp) == min(10, int(((para.pred == 1) & (para.gold == 0)).sum()))
    assert len(fn) == min(10, int(((para.pred == 0) & (para.gold == 1)).sum()))
    assert set(fp["id"]) <= set(para["id"]) and (fp["gold"] == 0).all()
