"""The results table over seeds (a2hlib.results, notebooks/06_results.ipynb)."""
from a2hlib import fileio, results, runs


def fake_run(root, model, bits, seed, value):
    folder = runs.run_dir(root, "toy", model, bits, seed)
    fileio.write_json(folder / runs.METRICS, {
        "dataset": "toy", "config": {"model": model, "code_length": bits, "seed": seed},
        "parameters": {"config": "cpu"}, "train_seconds": 1.0, "random_codes_map": 0.1,
        "metrics": {"map_all_stable": value}})


def test_results_table_mean_and_sd_over_seeds(tmp_path):
    fake_run(tmp_path, "adsh", 12, 0, 0.30)
    fake_run(tmp_path, "adsh", 12, 1, 0.40)
    fake_run(tmp_path, "a2net", 24, 0, 0.50)
    frame = results.collect_results(tmp_path)
    assert len(frame) == 3
    table = results.results_table(frame)
    assert table["model"].tolist() == ["adsh", "a2net"]  # the workbook's order, not alphabetical
    rows = table.set_index("model")
    assert rows.loc["adsh", "12 bits"] == "35.0 ± 7.1" and rows.loc["adsh", "seeds"] == 2
    assert rows.loc["a2net", "24 bits"] == "50.0"


def test_published_numbers_and_the_comparison(tmp_path):
    assert results.published_map("cub200", "a2net", 48)[0] == 80.6
    assert results.published_map("cub200", "a2netpp", 48) is None and results.published_map("cub200", "adsh", 16) is None
    for dataset, model, value in (("cub200", "a2net", 0.795), ("cub200", "a2net", 0.80), ("cub200", "adsh", 0.70),
                                  ("synthetic", "adsh", 0.4)):
        folder = runs.run_dir(tmp_path, dataset, model, 48, int(value * 1000))
        fileio.write_json(folder / runs.METRICS, {
            "dataset": dataset, "config": {"model": model, "code_length": 48, "seed": int(value * 1000)},
            "parameters": {}, "train_seconds": 1.0, "random_codes_map": 0.1, "metrics": {"map_all_stable": value}})
    table = results.compare_with_published(results.collect_results(tmp_path)).set_index(["dataset", "model"])
    assert len(table) == 2  # nothing is published for the built-in dataset
    a2net = table.loc[("cub200", "a2net")]
    assert a2net["ours"] == 79.8 and a2net["difference"] == -0.8 and a2net["verdict (±3)"] == "matches"
    assert a2net["seeds"] == 2
    adsh = table.loc[("cub200", "adsh")]
    assert adsh["difference"] == -6.5 and adsh["verdict (±3)"] == "below"
