"""The DSI++ measures of experiments/continual.py, on a hand-computed accuracy matrix."""

from __future__ import annotations

import pytest

from experiments import continual


def _step(per_task: list[float | None], updates: int) -> dict:
    training = {"optimizer_updates": updates, "forward_backward_passes": 2 * updates}
    return {
        "eval": {"per_task": per_task, "all": None},
        "entry": {"training": training},
        "seconds": 60,
    }


def test_measures_follow_their_definitions():
    # a[n][i]: Hits@10 on split i after step n.
    a = [[0.5], [0.4, 0.8], [0.6, 0.2, 0.9]]
    measures = continual.dsi_measures(a)
    assert measures[0] == {"A": 0.5, "F": None, "LA": 0.5}
    assert measures[1]["A"] == pytest.approx(0.6)
    assert measures[1]["F"] == pytest.approx(0.1)  # split 0: best 0.5 before, 0.4 now
    assert measures[1]["LA"] == pytest.approx(0.65)
    # Step 2: split 0 best earlier 0.5 -> 0.6 (gain: -0.1); split 1 best 0.8 -> 0.2 (0.6).
    assert measures[2]["F"] == pytest.approx((-0.1 + 0.6) / 2)
    assert measures[2]["A"] == pytest.approx((0.6 + 0.2 + 0.9) / 3)
    assert measures[2]["LA"] == pytest.approx((0.5 + 0.8 + 0.9) / 3)


def test_splits_without_test_queries_are_left_out():
    measures = continual.dsi_measures([[0.5], [0.5, None]])
    assert measures[1]["A"] == 0.5 and measures[1]["LA"] == 0.5


def test_summary_counts_only_training_after_d0_and_d0_forgetting():
    steps = [_step([0.5], 1000), _step([0.6, 0.7], 10), _step([0.45, 0.7, 0.3], 20)]
    summary = continual.summarize(steps, shared_d0=True)
    assert summary["updates_after_d0"] == 30 and summary["passes_after_d0"] == 60
    assert summary["forgetting_d0"] == pytest.approx(0.15)  # best 0.6 before, 0.45 at the end
    assert summary["hits10_d0"] == [0.5, 0.6, 0.45]


def _memorized(per_task: list[float | None], updates: int, memorization: float | None) -> dict:
    step = _step(per_task, updates)
    if memorization is not None:
        step["eval"]["memorization_d0"] = {"memorization@1": memorization}
    return step


def test_memorization_of_d0_and_the_dsi_plus_plus_goal():
    d0 = _memorized([0.5], 1000, 0.90)
    generative = [d0, _memorized([0.5, 0.6], 10, 0.88), _memorized([0.5, 0.6, 0.7], 10, 0.86)]
    finetune = [d0, _memorized([0.5, 0.6], 5, 0.70), _memorized([0.4, 0.6, 0.7], 5, 0.95)]
    retrain = [d0, _memorized([0.5, 0.6], 60, 0.91), _memorized([0.5, 0.6, 0.7], 70, 0.92)]
    summary = {
        name: continual.summarize(steps, shared_d0=True)
        for name, steps in (
            ("generative", generative),
            ("finetune", finetune),
            ("retrain", retrain),
        )
    }
    assert summary["generative"]["memorization_d0"] == [0.90, 0.88, 0.86]
    # The largest drop at any step after D0, not only the last.
    assert summary["finetune"]["memorization_d0_drop"] == pytest.approx(0.20)
    goal = continual.memorization_goal(summary)
    assert set(goal) == {"generative", "finetune"}
    assert goal["generative"]["memorization_d0_drop"] == pytest.approx(0.04)
    assert goal["generative"]["update_ratio_vs_retrain"] == pytest.approx(130 / 20)
    assert goal["generative"]["goal_met"] is True
    assert goal["finetune"]["goal_met"] is False  # 13x fewer updates, but 0.20 forgotten
    # Without a retraining run there is nothing to compare updates with.
    alone = continual.memorization_goal({"generative": summary["generative"]})
    assert alone["generative"]["goal_met"] is None
    # n-gram runs measure no memorization: no goal rows.
    plain = [_step([0.5], 1000), _step([0.5, 0.6], 10)]
    assert continual.memorization_goal({"generative": continual.summarize(plain, True)}) == {}


def test_set_changes_the_settings_of_d0_and_each_retraining():
    args = continual.parse_args(["--docids", "semantic", "--build-max-steps", "50"])
    assert args.name == "continual_semantic"
    config = continual.base_config(args)
    assert config.train.max_steps == 50
    windows = config.train.max_windows_per_doc
    changed = continual.parse_args(["--docids", "semantic", "--build-max-steps", "50",
                                    "--set", "train.max_windows_per_doc=2"])  # fmt: skip
    assert continual.base_config(changed).train.max_windows_per_doc == 2 != windows
    with pytest.raises(ValueError, match="is not a setting"):
        continual.base_config(continual.parse_args(["--set", "train.window_length=3"]))


def _tasks() -> list[continual.Task]:
    from dsi.data import Corpus

    docs = {
        "d1": "photosynthesis in green leaves",
        "d2": "volcanic ash and basalt rocks",
        "d3": "protein folding of enzymes",
        "d4": "tidal waves near coral reefs",
    }
    corpora = [
        Corpus(doc_ids=ids, titles=[""] * len(ids), texts=[docs[d] for d in ids])
        for ids in (["d1", "d2"], ["d3"], ["d4"])
    ]
    return [
        continual.Task(corpora[0], ["q1", "q2"]),
        continual.Task(corpora[1], ["q3"]),
        continual.Task(corpora[2], []),
    ]


def test_hits_per_split_judges_only_the_documents_indexed_so_far():
    tasks = _tasks()
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 1}, "q3": {"d3": 1}}
    rankings = {"q1": [("d2", 2.0), ("d1", 1.0)], "q2": [("d1", 1.0)], "q3": [("d3", 1.0)]}
    found = continual.hits_per_split(rankings, tasks, 1, qrels, {"d1", "d2", "d3"})
    assert found["per_query"] == {"q1": 1.0, "q2": 0.0, "q3": 1.0}
    assert found["per_task"] == [0.5, 1.0] and found["all"] == pytest.approx(2 / 3)
    # After D0 only, q2's d3 is not a document yet: its judgement of d2 alone counts.
    after_d0 = {"q1": [("d1", 1.0)], "q2": [("d2", 1.0)]}
    found = continual.hits_per_split(after_d0, tasks, 0, qrels, {"d1", "d2"})
    assert found["per_task"] == [1.0] and found["queries"] == 2


def test_baselines_grow_with_the_documents_and_read_only_their_training_queries(tmp_path):
    from dsi.data import TrainingQueries

    tasks = _tasks()
    queries = {"q1": "green leaves", "q2": "basalt", "q3": "enzymes", "t1": "coral reefs"}
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
    training = TrainingQueries({"t1": "folding study"}, {"t1": {"d1": 1, "d3": 1}})
    found = continual.baseline_steps(
        tmp_path, tasks, queries, qrels, training, ["bm25", "bm25+queries"]
    )
    bm25 = found["bm25"]["steps"]
    assert [s["all"] for s in bm25] == [1.0, 1.0, 1.0]
    assert [len(s["per_task"]) for s in bm25] == [1, 2, 3] and bm25[2]["per_task"][2] is None
    # A training query is appended to the documents indexed so far that it judges.
    assert [s["all"] for s in found["bm25+queries"]["steps"]] == [1.0, 1.0, 1.0]
    pairs = [s["parameters"]["training_pairs"] for s in found["bm25+queries"]["steps"]]
    assert pairs == [1, 2, 2]
    # Kept in the work directory: a second call computes nothing again.
    (tmp_path / "baselines.json").write_text(
        (tmp_path / "baselines.json").read_text().replace('"all": 1.0', '"all": 0.25')
    )
    again = continual.baseline_steps(tmp_path, tasks, queries, qrels, training, ["bm25"])
    assert again["bm25"]["steps"][0]["all"] == 0.25


def test_each_strategy_is_compared_with_each_baseline_on_the_same_queries():
    per_query = {f"q{i}": float(i % 2) for i in range(40)}  # 20 of 40 found
    strategy = [{"eval": {"per_query": dict(per_query)}}]
    worse = {q: 0.0 for q in per_query}
    baselines = {"bm25": {"steps": [{"per_query": worse}]}}
    found = continual.comparisons({"queries": strategy, "old": [{"eval": {}}]}, baselines)
    mean, low, high = found["queries"]["bm25"]
    assert mean == pytest.approx(0.5) and low < mean < high
    assert found["old"]["bm25"] is None  # no per-query scores: nothing to compare


def test_baselines_do_not_change_the_settings_of_a_finished_run():
    args = continual.parse_args([])
    assert args.baselines == "bm25,bm25+queries,dense"
    with pytest.raises(SystemExit, match="Unknown baseline 'bm26'"):
        continual.main(["--baselines", "bm26", "--data", "/nonexistent"])


def test_the_plot_shows_d0_memorization_for_docid_kinds_only():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    d0 = _memorized([0.5], 1000, 0.90)
    docids = {"generative": continual.summarize([d0, _memorized([0.5, 0.6], 10, 0.3)], True)}
    fig = continual.figure(docids)
    assert [ax.get_title() for ax in fig.axes][2] == "memorization@1 of D0's documents"
    assert list(fig.axes[2].lines[0].get_ydata()) == [0.90, 0.3]
    plt.close(fig)
    plain = {"generative": continual.summarize([_step([0.5], 1000), _step([0.5, 0.6], 10)], True)}
    fig = continual.figure(plain)
    assert len(fig.axes) == 2
    plt.close(fig)
