"""The simplicity-bias study of `notebooks/04_simplicity_bias.ipynb`, as library calls.

The paper's second claim: A²-Net++'s self-consistency (the image path) keeps the codes from
leaning on one easy cue. Two experiments, both over several trained runs per model:

1. **Attributions on the ordinary data** (`attribution_maps`, `measure_frame`, `deletion_study`,
   `randomization_study`): which pixels a code rests on (Captum, through `a2hlib.attribution`),
   summarised by `a2hlib.evidence` (share inside the object and its parts, concentration, deletion
   curves, a weight-randomisation sanity check).
2. **A planted shortcut** (`shortcut_study`): runs trained on the built-in dataset with a class-
   coloured square (`a2hlib.synthetic.shortcut_datasets`), evaluated with the cue matching,
   misleading and removed.

`claim` turns the numbers into sentences with the workbook's one rule (`a2hlib.stats`).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from a2hlib import attribution, evaluation, evidence
from a2hlib.stats import compare, mean_sd, verdict

log = logging.getLogger(__name__)

__all__ = ["METHOD_NAMES", "SHORT_NAMES", "AttributionSettings", "similarity_target", "evenly_spread",
           "attribution_maps", "measure_frame", "measure_table", "deletion_study", "deletion_table",
           "randomization_study", "cascade_study", "shortcut_study", "claim", "nested"]

METHOD_NAMES = {"ig": "Integrated Gradients", "gradcam": "Grad-CAM", "occlusion": "Occlusion"}
SHORT_NAMES = {"ig": "IG", "gradcam": "Grad-CAM", "occlusion": "Occlusion"}


@dataclasses.dataclass(frozen=True)
class AttributionSettings:
    """How each method is run: IG path steps, occlusion window and stride as shares of the image
    side, images per Captum call."""

    ig_steps: int = 24
    occlusion_window: float = 0.125
    occlusion_stride: float = 0.0625
    batch: int = 16

    def options(self, method: str, image_size: int) -> dict[str, Any]:
        """Keyword options of `a2hlib.attribution.attribute` for `method` at `image_size` px."""
        if method == "ig":
            return {"n_steps": self.ig_steps, "internal_batch_size": max(self.ig_steps, 8 * self.batch)}
        if method == "occlusion":
            return {"window": max(1, round(self.occlusion_window * image_size)),
                    "stride": max(1, round(self.occlusion_stride * image_size))}
        return {}


def evenly_spread(n: int, count: int) -> np.ndarray:
    """`count` indices spread evenly over range(n) (all of them when count ≥ n)."""
    return np.unique(np.linspace(0, n - 1, min(count, n)).astype(int))


def similarity_target(model, B, labels, db_labels) -> attribution.CodeSimilarityTarget:
    """f(x) = u(x)·t/k with t the mean learned code of the database items relevant to each query:
    "what in this image makes it retrieve its own class"."""
    return attribution.CodeSimilarityTarget(model, attribution.relevant_mean_codes(labels, B, db_labels))


def _target(run, images, labels, db_labels, kind: str, bit: int):
    if kind == "similarity":
        return similarity_target(run.model, run.B, labels, db_labels)
    return attribution.BitTarget.for_images(run.model, bit, images)


def attribution_maps(runs: Mapping, images: torch.Tensor, labels, db_labels, methods: Sequence[str],
                     settings: AttributionSettings, kind: str = "similarity", bit: int = 0) -> dict:
    """(model, seed, method) → maps (n×H×W, CPU) of every run in `runs` ((model, seed) →
    `a2hlib.runs.TrainedRun`); `kind`: "similarity" (`similarity_target`) or "bit" (sign-corrected
    relaxed value of `bit`)."""
    size = images.shape[-1]
    out = {}
    for (model, seed), run in runs.items():
        for method in methods:
            target = _target(run, images, labels, db_labels, kind, bit)
            out[model, seed, method] = attribution.attribute(method, target, images, batch_size=settings.batch,
                                                             **settings.options(method, size)).cpu()
    return out


def measure_frame(maps: Mapping, masks: Mapping[str, Any] | None) -> pd.DataFrame:
    """One row per (model, seed, method, measure, image) with the `a2hlib.evidence.measures` of
    every map; `masks` from `a2hlib.datasets.dataset_masks` (None: only the concentration ones)."""
    masks = masks or {}
    rows = []
    for (model, seed, method), a in maps.items():
        values = evidence.measures(a, masks.get("object"), masks.get("parts"), masks.get("part_names"))
        rows += [{"model": model, "seed": seed, "method": method, "measure": name, "image": i, "value": float(v)}
                 for name, vs in values.items() for i, v in enumerate(vs)]
    return pd.DataFrame(rows)


def measure_table(frame: pd.DataFrame, models: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """method × measure rows, one column per model: "mean ± sd" over seeds (each seed's mean over
    images) when there are several seeds, else over images; and which of the two it is."""
    over_seeds = frame["seed"].nunique() > 1
    source = frame.groupby(["model", "method", "measure", "seed"])["value"].mean().reset_index() if over_seeds \
        else frame
    table = (source.groupby(["method", "measure", "model"])["value"].agg(mean_sd).unstack("model")[list(models)])
    return table, "seeds" if over_seeds else "images"


def deletion_study(runs: Mapping, images: torch.Tensor, labels, db_labels, maps: Mapping, methods: Sequence[str],
                   fractions: Sequence[float]) -> dict:
    """(model, seed, method, score) → `a2hlib.evidence.DeletionCurve`: the share of bits unchanged
    ("bit_agreement") and the mAP of the images as queries against B ("map") as the most attributed
    pixels are deleted; method "random order" deletes pixels in a random order (the baseline)."""
    fractions = np.asarray(fractions, float)
    size = images.shape[-1]
    out = {}
    for (model, seed), run in runs.items():
        scores = {"bit_agreement": evidence.bit_agreement_score(run.model, images),
                  "map": evidence.map_score(run.model, run.B, labels, db_labels)}
        noise = torch.rand(images.shape[0], size, size, generator=torch.Generator().manual_seed(seed))
        for method, a in [(m, maps[model, seed, m]) for m in methods] + [("random order", noise)]:
            for name, fn in scores.items():
                out[model, seed, method, name] = evidence.deletion_curve(fn, images, a, fractions)
    return out


def deletion_table(deletion: Mapping, models: Sequence[str]) -> pd.DataFrame:
    """score × method rows, one column per model: the relative area under the deletion curve
    (mean over seeds; lower = the map found the evidence sooner)."""
    frame = pd.DataFrame([{"model": m, "seed": s, "method": method, "score": name, "auc_relative": c.auc_relative}
                          for (m, s, method, name), c in deletion.items()])
    return frame.groupby(["score", "method", "model"])["auc_relative"].mean().unstack("model")[list(models)]


def randomization_study(runs: Mapping, images: torch.Tensor, labels, db_labels, maps: Mapping,
                        methods: Sequence[str], settings: AttributionSettings, seed: int) -> pd.DataFrame:
    """method × model Spearman correlation between each run's maps and the maps of the same
    model with every weight re-initialised (runs of `seed` only: a check of the methods)."""
    size = images.shape[-1]
    rows = []
    for (model, s), run in runs.items():
        if s != seed:
            continue
        for method in methods:
            check = evidence.randomization_check(
                run.model, lambda net: similarity_target(net, run.B, labels, db_labels), images, method,
                maps=maps[model, s, method].to(images.device), seed=s, batch_size=settings.batch,
                **settings.options(method, size))
            rows.append({"model": model, "method": method, "spearman": check["spearman"]})
    return pd.DataFrame(rows).groupby(["method", "model"])["spearman"].mean().unstack("model")


def cascade_study(run, images: torch.Tensor, labels, db_labels, maps: Mapping[str, torch.Tensor],
                  methods: Sequence[str], settings: AttributionSettings, seed: int) -> dict[str, list]:
    """method → [(stage, Spearman)] of the cascading randomisation of one run (Adebayo et al.):
    stages re-initialised from the code layer down. `maps`: method → the run's trained maps."""
    size = images.shape[-1]
    return {method: evidence.randomization_check(
        run.model, lambda net: similarity_target(net, run.B, labels, db_labels), images, method,
        maps=maps[method].to(images.device), cascade=True, seed=seed, batch_size=settings.batch,
        **settings.options(method, size))["cascade"] for method in methods}


def shortcut_study(runs: Mapping, data, num_images: int, methods: Sequence[str], settings: AttributionSettings,
                   device) -> tuple[pd.DataFrame, dict, np.ndarray]:
    """The planted-shortcut numbers of every run ((model, seed) → TrainedRun trained on
    `data.database`, `data`: `a2hlib.synthetic.ShortcutData`): query mAP with the cue matching
    ("same"), misleading ("random") and removed ("absent"), the drop same − absent, and for each
    method the attribution share on the cue and inside the bird for `num_images` queries.
    Returns (table: one row per run, maps: (model, seed, method) → maps, picked query indices)."""
    same = data.queries["same"]
    picked = evenly_spread(len(same), num_images)
    images = torch.stack([same[int(i)][0] for i in picked]).to(device)
    labels = same.targets[picked]
    cue, bird = data.shortcut_masks["same"][picked], data.object_masks[picked]
    rows, maps = [], {}
    for (model, seed), run in runs.items():
        row = {"model": model, "seed": seed}
        for mode, queries in data.queries.items():
            row[f"map_{mode}"] = evaluation.query_map(run.model, queries, run.B, data.database.targets, device)
        row["map_drop"] = row["map_same"] - row["map_absent"]
        target = similarity_target(run.model, run.B, labels, data.database.targets)
        for method in methods:
            a = attribution.attribute(method, target, images, batch_size=settings.batch,
                                      **settings.options(method, images.shape[-1])).cpu()
            maps[model, seed, method] = a
            row[f"shortcut_share_{method}"] = float(np.nanmean(evidence.mask_share(a, cue)))
            row[f"object_share_{method}"] = float(np.nanmean(evidence.mask_share(a, bird)))
        rows.append(row)
    return pd.DataFrame(rows), maps, picked


def _versus(values_a, values_b, better: str, paired: bool = False) -> tuple[str, str]:
    c = compare(values_a, values_b, paired=paired)
    return verdict(c, better), c.describe(4)


def claim(shortcut_table: pd.DataFrame, measures: pd.DataFrame, models: Sequence[str], headline: str,
          shortcut_method: str, candidate: str = "a2netpp") -> dict[str, Any]:
    """Did self-consistency counter simplicity bias in these runs? Decided by `a2hlib.stats`.

    Core (planted shortcut, over seeds): `candidate` puts less attribution on the cue and loses
    less mAP when the cue is removed than each other model. Supporting (ordinary data, `headline`
    method): more of its evidence inside the object and more spread out (entropy) than A²-Net,
    over seeds, or paired over the same images with one seed. Returns {"checks", "statements",
    "overall"}."""
    if candidate not in models or len(models) < 2:
        return {"checks": {}, "statements": ["Overall: not tested (needs a2netpp and at least one other model)."],
                "overall": "not tested"}
    checks, statements = {}, []
    others = [m for m in models if m != candidate]
    for key, column, what in (("shortcut_share", f"shortcut_share_{shortcut_method}",
                               f"attribution on the cue ({METHOD_NAMES.get(shortcut_method, shortcut_method)})"),
                              ("map_drop", "map_drop", "mAP lost when the cue is removed")):
        words = []
        for other in others:
            word, numbers = _versus(shortcut_table.loc[shortcut_table.model == candidate, column],
                                    shortcut_table.loc[shortcut_table.model == other, column], "lower")
            checks[f"{key} vs {other}"] = word
            words.append(f"vs {other}: {numbers}: {word}")
        statements.append(f"Planted shortcut, {what} (lower is better), {candidate} " + "; ".join(words) + ".")
    supporting = []
    if "a2net" in models and candidate != "a2net":
        seeds = measures["seed"].nunique()
        for measure, what in (("object_share", "share inside the object"), ("entropy", "spread (entropy)")):
            sub = measures[(measures.method == headline) & (measures.measure == measure)]
            if sub.empty:
                continue
            if seeds > 1:
                per_seed = sub.groupby(["model", "seed"])["value"].mean()
                word, numbers = _versus(per_seed[candidate], per_seed["a2net"], "higher")
                kind = "over seeds"
            else:
                pair = [sub[sub.model == m].sort_values("image")["value"].to_numpy() for m in (candidate, "a2net")]
                word, numbers = _versus(*pair, "higher", paired=True)
                kind = "paired over the same images"
            checks[measure] = word
            supporting.append(word)
            statements.append(f"Ordinary data, {METHOD_NAMES.get(headline, headline)} evidence {what}: {candidate} "
                              f"minus a2net {numbers} ({kind}; higher is better): {word}.")
    core = [checks[f"{k} vs {o}"] == "held" for k in ("shortcut_share", "map_drop") for o in others]
    overall = "held" if all(core) else "held in part" if any(core) else "did not hold"
    statements.append(f"Overall: on the planted shortcut the claim held in {sum(core)} of {len(core)} comparisons "
                      f"({overall})" + (f"; on the ordinary data {supporting.count('held')} of {len(supporting)} "
                                        "supporting measures held." if supporting else "."))
    return {"checks": checks, "statements": statements, "overall": overall}


def nested(flat: Mapping[tuple, Any]) -> dict:
    """{(a, b, c): v} → {"a": {"b": {"c": v}}}, for JSON results files."""
    out: dict = {}
    for key, value in flat.items():
        cur = out
        for part in key[:-1]:
            cur = cur.setdefault(str(part), {})
        cur[str(key[-1])] = value
    return out
