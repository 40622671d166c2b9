"""Turn raw dataset downloads into the workbook's one dataset format (docs/ARCHITECTURE.md).

    python -m data_prep --help
    python -m data_prep <name> --help           # where to download, expected files, checksums
    python -m data_prep <name> --root RAW --out DIR [--skip-bad] [--val-fraction F --seed S]

Every preparer is a module `data_prep/<name>.py` with the same interface:

- `DESCRIPTION` (str): first line = one-line summary; then download URLs, expected files and
  checksums (md5 where known, else 'unknown'), and the split protocol;
- `add_arguments(parser)`: its own options (most add `--root` via `common.add_root_argument`);
- `prepare(args) -> pathlib.Path`: reads the raw layout and writes the prepared folder (through
  `a2hlib.manifest.write_dataset`), returning it; bad input raises `a2hlib.manifest.DatasetError`.

The CLI adds these options to every preparer before calling `add_arguments` (a preparer may
redefine one): `--out` (args.out, Path, required), `--skip-bad` (args.skip_bad), `--val-fraction`
(args.val_fraction, float, 0), `--seed` (args.seed, int, 0), `--no-verify` / `--full-verify`
(args.verify: 'off' / 'fast' (default) / 'full'), `--limit` (args.limit, int or None: images per
split, for quick runs), `--quiet` (args.quiet).
"""
from __future__ import annotations

import importlib
import types

# CLI name -> module data_prep.<name>, in the order --help lists them.
PREPARERS = ("cub200", "aircraft", "food101", "nabirds", "vegfru", "stanford_dogs", "cifar10",
             "nuswide", "fashion_mnist", "synthetic")


def load(name: str) -> types.ModuleType:
    """Import the preparer module `data_prep.<name>`."""
    if name not in PREPARERS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(PREPARERS)}")
    return importlib.import_module(f"{__name__}.{name}")


def prepare(name: str, out, root=None, **options):
    """Prepare dataset `name` into `out` from Python (what the CLI does); returns the folder.

    `options` are the CLI's long options with underscores (`skip_bad=True`, `val_fraction=0.1`,
    `limit=100`, `shortcut_strength=0.9`, ...). Bad input raises `a2hlib.manifest.DatasetError`.
    """
    from data_prep.__main__ import build_parser
    argv = [name, "--out", str(out)] + (["--root", str(root)] if root else [])
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value not in (None, False):
            argv += [flag, str(value)]
    args = build_parser().parse_args(argv)
    return args._module.prepare(args)
