"""experiments/quality.py keeps a trained run when only its decoding settings changed, and the
dev points of a run resumed from its checkpoint."""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))

import quality  # noqa: E402

from dsi.config import IndexConfig  # noqa: E402


def _fingerprint(settings: dict) -> dict:
    return quality.fingerprint_of(IndexConfig().updated(settings), Namespace(eval_every=10.0))


def test_decoding_settings_are_set_apart_from_training_ones():
    base = _fingerprint({})
    trained, decoding = quality._decoding_apart(base)
    assert decoding["word_weight"] == 0.75 and "scoring" in decoding
    assert "word_weight" not in trained["config"]["docid_options"]
    assert "salient_pairs_per_doc" in trained["config"]["docid_options"]
    assert trained["eval_every"] == 10.0

    rescored = _fingerprint({"docid_options.word_weight": 0.5, "docid_options.unigrams": 7})
    assert rescored != base
    assert quality._decoding_apart(rescored)[0] == trained
    retrained = _fingerprint({"docid_options.salient_pairs_per_doc": 12})
    assert quality._decoding_apart(retrained)[0] != trained
    # A fingerprint saved before a decoding setting existed still matches on training.
    older = json.loads(json.dumps(base))
    del older["config"]["docid_options"]["word_weight"]
    assert quality._decoding_apart(older)[0] == trained


def test_other_docid_schemes_have_no_decoding_settings():
    semantic = _fingerprint({"docids": "semantic"})
    assert quality._decoding_apart(semantic) == (semantic, {})


def test_a_resumed_run_keeps_its_earlier_dev_points(tmp_path):
    fingerprint = _fingerprint({})
    path = tmp_path / "curve.json"
    assert quality._measured_curve(path, fingerprint) == []
    curve = [{"minutes": m, "nDCG@10": m / 100} for m in (10.0, 20.0, 30.0)]
    path.write_text(json.dumps({"fingerprint": fingerprint, "points": curve}))
    kept = quality._measured_curve(path, fingerprint)
    assert kept == curve
    # Resumed from the checkpoint at 25 minutes: the point at 30 is measured again.
    quality._add_point(kept, {"minutes": 30.0, "nDCG@10": 0.5})
    assert [(p["minutes"], p["nDCG@10"]) for p in kept] == [(10.0, 0.1), (20.0, 0.2), (30.0, 0.5)]
    # Started afresh: every later point goes.
    quality._add_point(kept, {"minutes": 10.0, "nDCG@10": 0.05})
    assert kept == [{"minutes": 10.0, "nDCG@10": 0.05}]
    # Another run's points are not its own.
    assert quality._measured_curve(path, _fingerprint({"train.learning_rate": 1e-3})) == []
