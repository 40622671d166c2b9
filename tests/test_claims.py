"""The claims campaign (a2hlib.claims): its grids are valid batch plans, and its tables state what
their numbers say (verdicts by a2hlib.stats)."""
import pandas as pd

from a2hlib import batch, claims


def test_the_campaign_plans_valid_grids(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    notebooks = claims.ROOT / "notebooks"
    grids = {name: (steps, args) for name, steps, args in claims.plans(tmp_path, 2, notebooks)}
    assert list(grids) == ["scratch", "pretrained", "fashion_mnist"]
    for steps, args in grids.values():
        batch.check_parameters(steps, notebooks)  # every parameter passes the notebooks' own checks
        assert args.devices == ["cpu", "cpu"]
    train = [s for s in grids["pretrained"][0] if s.notebook == batch.TRAIN]
    assert len(train) == 3 * 3 * 3 and {s.parameters["config"] for s in train} == {"pretrained"}
    assert {s.parameters["dataset"] for s in train} == {"synthetic128"}
    bias = next(s for s in grids["pretrained"][0] if s.notebook == batch.BIAS)
    assert bias.parameters["shortcut_config"] == "pretrained" and bias.parameters["workers"] == 2
    assert bias.parameters["code_length"] == claims.ANALYSIS_BITS
    fashion = grids["fashion_mnist"][0]
    assert next(s for s in fashion if s.notebook == batch.PREPARE).parameters["limit"] == claims.FASHION_LIMIT
    assert next(s for s in fashion if s.notebook == batch.TRAIN).parameters["overrides"] == {"image_size": 32}


def test_retrieval_table_states_the_verdict_per_code_length():
    rows = [{"model": m, "bits": b, "seed": s, "asym_map_all_stable": v}
            for m, base in (("adsh", 0.40), ("a2net", 0.50), ("a2netpp", 0.41))
            for b in claims.BITS for s, v in enumerate((base, base + 0.01, base + 0.02))]
    table = claims.retrieval_table({"scratch": pd.DataFrame(rows)}).set_index("model")
    assert table.loc["adsh", "12 bits"] == "41.0 ± 1.0" and "vs ADSH 12" not in table.loc["adsh"].dropna()
    assert table.loc["a2net", "vs ADSH 24"] == "held"
    assert table.loc["a2netpp", "vs ADSH 48"] == "within the spread"


def test_simplicity_and_alignment_tables():
    runs = [{"model": m, "seed": s, "map_same": 0.5, "map_absent": 0.5 - d, "map_drop": d + 0.001 * s,
             "shortcut_share_ig": share} for m, d, share in (("adsh", 0.4, 0.2), ("a2net", 0.4, 0.2),
                                                            ("a2netpp", 0.1, 0.05)) for s in range(3)]
    table = claims.simplicity_table({"scratch": {"shortcut": {"runs": runs}}}).set_index("model")
    assert table.loc["adsh", "a2netpp lower drop"] == "held" and table.loc["adsh", "mAP drop"] == "0.401 ± 0.001"
    summaries = [{"model": m, "seed": s, "scope": scope, "mi_best_above_chance": v + 0.001 * s,
                  "attributes_captured": 1, "attributes": 4}
                 for m, v in (("adsh", 0.1), ("a2net", 0.3), ("a2netpp", 0.1)) for s in range(3)
                 for scope in ("marginal, all", "class shuffle, class-determined", "within class, all")]
    table = claims.alignment_table({"scratch": {"summaries": summaries}}).set_index("model")
    assert table.loc["a2net", "MI above chance: vs ADSH"] == "held"
    assert table.loc["a2netpp", "MI above class-shuffle level: vs ADSH"] == "within the spread"
    assert table.loc["adsh", "within-class attributes captured"] == "3 of 12"


def test_summary_of_an_unfinished_campaign_lists_what_is_missing(tmp_path):
    record = claims.summarise(tmp_path)
    text = (tmp_path / "claims.md").read_text()
    assert "Not finished yet" in text and len(record["not_finished"]) == 2 * len(claims.SETTINGS)
    assert all(path in text for path in record["not_finished"])


def test_tie_gap_table_is_stable_minus_aware_in_points():
    rows = [{"model": m, "bits": b, "seed": 0, "asym_map_all_stable": 0.5, "asym_map_all_aware": 0.5 - g,
             "symm_map_all_stable": 0.4, "symm_map_all_aware": 0.4 - 2 * g}
            for b in claims.BITS for m, g in (("adsh", 0.01), ("a2net", 0.03))]
    table = claims.tie_gap_table({"scratch": pd.DataFrame(rows)}).set_index("protocol")
    assert table.loc["asymmetric", "12 bits"] == "2.0 (max 3.0)"
    assert table.loc["symmetric", "48 bits"] == "4.0 (max 6.0)"
