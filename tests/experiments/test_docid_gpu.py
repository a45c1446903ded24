"""experiments.docid_gpu's report: the GPU runs beside the CPU finalist."""

import json

from experiments.docid_gpu import main


def _training(steps: int, seconds: float, rate: float) -> dict:
    return {"steps": steps, "seconds": seconds, "examples_per_second": rate}


def _dev(ndcg: float, mem: float) -> dict:
    return {
        "nDCG@10": ndcg,
        "Hits@10": 0.5,
        "memorization@1": mem,
        "memorization@10": 1.0,
        "memorization_documents": 500,
    }


def test_report_sets_every_gpu_seed_beside_the_cpu_finalist(tmp_path):
    gpus = []
    for seed, mem_all in ((13, 0.9996), (14, None)):
        record = {
            "device": "NVIDIA H200",
            "minutes": 4.5,
            "seed": seed,
            "training": _training(8805, 270.0, 4164.4),
            "dev": _dev(0.323, 0.5),
            "curve": [{"minutes": 1.5, **_dev(0.1, 0.03)}, {"minutes": 4.5, **_dev(0.3, 0.5)}],
        }
        if mem_all is not None:
            record["memorization_all"] = {**_dev(0, mem_all), "memorization_documents": 5183}
        gpus.append(tmp_path / f"seed{seed}.json")
        gpus[-1].write_text(json.dumps(record))
    cpu = tmp_path / "cpu.json"
    rows = [
        {"name": "bm25", "dev": _dev(0.64, 0)},
        {
            "name": "semantic",
            "settings": {"train": {"seed": 13}},
            "training": _training(14184, 9000.0, 180.0),
            "dev": _dev(0.31, 0.97),
            "curve": [],
        },
    ]
    cpu.write_text(json.dumps({"results": rows}))
    out = tmp_path / "report"
    main(["report", "--gpu", *map(str, gpus), "--cpu", str(cpu), "--output", str(out)])
    table = out.with_suffix(".md").read_text().splitlines()
    body = [line for line in table if line.startswith("| GPU") or line.startswith("| CPU")]
    assert body == [
        "| GPU | 13 | 8,805 | 4.5 | 4,164 | 0.323 | 0.500 | 1.000 | 1.000 | 5,183 |",
        "| GPU | 14 | 8,805 | 4.5 | 4,164 | 0.323 | 0.500 | 0.500 | 1.000 | 500 |",
        "| CPU, 1 thread | 13 | 14,184 | 150.0 | 180 | 0.310 | 0.500 | 0.970 | 1.000 | 500 |",
    ]
    saved = json.loads(out.with_suffix(".json").read_text())
    assert [g["seed"] for g in saved["gpu"]] == [13, 14]
    assert saved["cpu"]["training"]["steps"] == 14184
