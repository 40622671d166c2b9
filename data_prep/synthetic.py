"""The built-in synthetic birds -> manifest + PNGs (`a2hlib.synthetic`; notebooks/01_data_preparation)."""
from __future__ import annotations

import argparse
import dataclasses
import pathlib
import time

from data_prep import common

DESCRIPTION = """\
Synthetic birds: the built-in fine-grained dataset, generated from a seed (no download, no --root).

Birds drawn from parts (body, head, wing, tail, beak, crest, legs, eye) in random poses on random
backgrounds. Classes come in groups ("genera") sharing their colours; neighbouring classes of a group
differ in one small part (wing pattern, tail shape, beak length or crest). Written:
  images/<class>/<index>.png, manifest.csv, dataset.json (+ synthetic_config, attribute_groups),
  attributes.npz (one-hot CUB-style attributes, e.g. has_wing_color::red; certainty 4),
  masks.npz (object, parts, shortcut masks at the image resolution).
Defaults (preset 'default'): 20 classes x (50 database + 15 query) = 1,300 images of 64 px, a few
seconds. --seed changes the images, --class-seed the class definitions. --val-fraction F moves
round(F * database-per-class) images per class into a separately generated 'val' split.
--shortcut-strength P plants a class-coloured patch near the top-left corner: on database/val
images it shows the true class with probability P (else another class), on queries it follows
--shortcut-query (random | absent | same).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from a2hlib.synthetic import PRESETS
    g = parser.add_argument_group("synthetic birds (defaults: the preset)")
    g.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="starting config (default: default)")
    for flag, kind, help_ in (
            ("--num-classes", int, "number of classes"),
            ("--group-size", int, "classes per group (1..8)"),
            ("--database-per-class", int, "database images per class"),
            ("--query-per-class", int, "query images per class"),
            ("--val-per-class", int, "val images per class (overrides --val-fraction)"),
            ("--image-size", int, "image side in pixels"),
            ("--class-seed", int, "seed of the class definitions"),
            ("--shortcut-strength", float, "P(cue = true class) on the database side; 0 = no cue")):
        g.add_argument(flag, type=kind, default=None, help=help_)
    g.add_argument("--shortcut-query", choices=("random", "absent", "same"), default=None,
                   help="the cue on query images (default: random)")
    g.add_argument("--name", default="synthetic_birds", help="dataset name in dataset.json")


def config_from_args(args: argparse.Namespace):
    """The `SyntheticConfig` that `args` describe (preset, then the flags that were given)."""
    from a2hlib.synthetic import PRESETS
    base = PRESETS[getattr(args, "preset", None) or "default"]
    over = {f.name: getattr(args, f.name) for f in dataclasses.fields(base)
            if getattr(args, f.name, None) is not None}
    cfg = dataclasses.replace(base, **over)
    fraction = float(getattr(args, "val_fraction", 0.0) or 0.0)
    if getattr(args, "val_per_class", None) is None and fraction > 0:
        k = min(int(round(fraction * cfg.database_per_class)), cfg.database_per_class - 1)
        cfg = dataclasses.replace(cfg, val_per_class=k, database_per_class=cfg.database_per_class - k)
    limit = getattr(args, "limit", None)
    if limit:
        per = max(1, limit // cfg.num_classes)
        cfg = dataclasses.replace(cfg, **{f: min(getattr(cfg, f), per) for f in
                                          ("database_per_class", "query_per_class", "val_per_class")})
    return cfg


def prepare(args: argparse.Namespace) -> pathlib.Path:
    from a2hlib import synthetic
    cfg = config_from_args(args)
    t0 = time.perf_counter()
    data = synthetic.generate(cfg)
    out = synthetic.write_to_disk(data, args.out, name=getattr(args, "name", None) or "synthetic_birds")
    counts = {s: int((data.split == s).sum()) for s in ("database", "query", "val")}
    common.say(args, f"wrote {out}: database {counts['database']:,}, query {counts['query']:,}, "
                     f"val {counts['val']:,}; {data.num_classes} classes, {cfg.image_size} px, "
                     f"{time.perf_counter() - t0:.1f} s")
    return out
