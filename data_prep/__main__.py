"""`python -m data_prep <name> --root RAW --out DIR`: see `data_prep/__init__.py`."""
from __future__ import annotations

import argparse
import pathlib
import sys
import textwrap

from a2hlib.fileio import DiskFullError
from a2hlib.manifest import DatasetError
from data_prep import PREPARERS, load
from data_prep.common import as_disk_full


def _add_common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("options of every preparer")
    g.add_argument("--out", type=pathlib.Path, required=True, metavar="DIR",
                   help="folder to write manifest.csv, dataset.json (and sidecars/images) into")
    g.add_argument("--skip-bad", action="store_true",
                   help="leave out bad entries (missing/corrupt images, malformed lines) instead of "
                        "stopping; they are listed in dataset.json 'skipped' and in the summary")
    g.add_argument("--val-fraction", type=float, default=0.0, metavar="F",
                   help="move this fraction of each class's database images to a 'val' split "
                        "(stratified, seeded; default 0)")
    g.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of every random choice of the preparer (default 0)")
    g.add_argument("--no-verify", dest="verify", action="store_const", const="off", default="fast",
                   help="only check that images exist (default: open each with PIL and verify it; "
                        "JPEGs must have their end marker), and accept raw files whose checksum "
                        "differs from the official one (recorded in dataset.json)")
    g.add_argument("--full-verify", dest="verify", action="store_const", const="full",
                   help="decode every image completely (slow, catches every corrupt file)")
    g.add_argument("--limit", type=int, default=None, metavar="N",
                   help="keep at most N images per split (quick runs; recorded as a count difference)")
    g.add_argument("--quiet", action="store_true", help="print only warnings and errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep",
        description="Turn a raw dataset download into the workbook's dataset format "
                    "(manifest.csv + dataset.json, docs/ARCHITECTURE.md).",
        epilog="`python -m data_prep <name> --help` says where to download the raw files, which "
               "files are expected and their checksums. Errors print one line "
               "'error: <file>:<line>: <problem> — <what to do>' and exit with status 1.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="name", metavar="<name>", required=True)
    missing = []
    for name in PREPARERS:
        try:
            module = load(name)
        except Exception as err:  # a missing or broken preparer must not break the others
            missing.append(name if isinstance(err, ModuleNotFoundError)
                           and err.name == f"data_prep.{name}" else f"{name} ({err})")
            continue
        description = textwrap.dedent(module.DESCRIPTION).strip()
        p = sub.add_parser(name, help=description.splitlines()[0], description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           conflict_handler="resolve")
        _add_common(p)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    if missing:
        parser.epilog += f" Not available in this checkout: {', '.join(missing)}."
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 1 bad input, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error
        return int(exc.code or 0)
    try:
        args._module.prepare(args)
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # e.g. no permission to write --out, disk full
        full = as_disk_full(err, err.filename or args.out)
        if isinstance(full, DiskFullError):  # its message names the file and what to do
            print(f"error: {full.strerror}", file=sys.stderr)
            return 1
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err} — check the path, its permissions and the free "
              "disk space", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
