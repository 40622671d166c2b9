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
    assert table.loc[("toy", "adsh"), "12 bits"] == "35.0 ± 7.1"
    assert table.loc[("toy", "a2net"), "24 bits"] == "50.0"
