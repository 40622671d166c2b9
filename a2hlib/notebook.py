"""What every notebook does right after its `parameters` cell: check the parameters, then set up.

    session = notebook.start(globals())

`start` reads the names and types the `parameters` cell declared (its annotations, e.g.
`seeds: list = [0, 1, 2]`), so it knows every parameter and nothing else:

1. **Coerces** values given as text by `papermill -p name value` to the declared type
   (`-p seeds "[0]"` is the string "[0]"; left alone, a loop over it would run over characters)
   and writes them back into the notebook's namespace.
2. **Checks** every parameter against `RULES` (allowed models, code lengths ≥ 1, known configs,
   `overrides` keys and value types of `TrainConfig`, an available device, …) and raises one
   `ParameterError` listing each problem with the parameter's name, the allowed values and what
   to do, before any data is generated or any folder is created.
3. Sets torch's CPU **threads** (`threads` parameter, else `A2H_THREADS`, else `DEFAULT_THREADS`),
   switches **smoke mode** on when asked or when `CI` is set (pyro's `smoke_test` habit: smoke
   runs write under `<runs_dir>/smoke` and never into `figures/`), resolves the **device**, and
   records the **parameters** for the notebook's results file.

`python -m a2hlib.batch` applies the same `check` to every notebook of a grid before starting any
kernel (`declared_types` reads a notebook's parameters without running it).
"""
from __future__ import annotations

import ast
import dataclasses
import os
import pathlib
import re
import types
import typing
from typing import Any, Callable

__all__ = ["ParameterError", "Session", "start", "check", "coerce", "declared_types", "RULES",
           "smoke_mode", "smoke_paths", "set_threads", "DEFAULT_THREADS"]

# torch's CPU threads when neither the `threads` parameter nor A2H_THREADS says otherwise
# (measured on the 2-core build machine, idle and busy: README "Threads").
DEFAULT_THREADS = 1
_PLAIN = (int, float, bool, str, type(None), list, dict, tuple)


class ParameterError(ValueError):
    """One or more notebook parameters are wrong; the message names each and says what to do."""


# ------------------------------------------------------------------------------------------ rules
Rule = Callable[[Any], "str | None"]  # a problem ("must be …") or None when the value is fine


def one_of(*allowed: Any) -> Rule:
    return lambda v: None if v in allowed else f"must be one of {', '.join(map(repr, allowed))}"


def at_least(low: float) -> Rule:
    return lambda v: None if v >= low else f"must be ≥ {low}"


def between(low: float, high: float) -> Rule:
    return lambda v: None if low <= v <= high else f"must lie in [{low}, {high}]"


def each(rule: Rule, nonempty: bool = True, unique: bool = True) -> Rule:
    def check_list(values):
        if nonempty and not values:
            return "must not be empty"
        if unique and len(set(map(repr, values))) != len(values):
            return "must not repeat a value"
        problems = [f"{v!r} {p}" for v in values if (p := rule(v)) is not None]
        return "; ".join(problems) or None
    return check_list


def _name(v: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9_.-]+", v) else "must be a plain name (letters, digits, _ . -)"


def _models() -> tuple[str, ...]:
    from a2hlib.models import VARIANTS
    return VARIANTS


def _model(v: str) -> str | None:
    return one_of(*_models())(v)


def _config(v: str) -> str | None:
    from a2hlib.training import CONFIGS
    return one_of(*sorted(CONFIGS))(v)


def _device_name(v: str) -> str | None:
    return None if re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) else "must be 'auto', 'cpu', 'cuda' or 'cuda:N'"


def _device(v: str) -> str | None:
    if (problem := _device_name(v)) is not None:
        return problem
    if v.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            return "asks for CUDA, but no CUDA device is available here; use 'auto' or 'cpu'"
        if ":" in v and int(v.split(":")[1]) >= torch.cuda.device_count():
            return f"names a GPU this machine lacks (it has {torch.cuda.device_count()}); use 'cuda:0'…"
    return None


def _methods(v: list) -> str | None:
    from a2hlib.attribution import METHODS
    return each(one_of(*METHODS))(v)


def _overrides(v: dict) -> str | None:
    from a2hlib.training import TrainConfig
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    hints = typing.get_type_hints(TrainConfig)
    problems = []
    for key, value in v.items():
        if key in _OWN_PARAMETERS:
            problems.append(f"sets {key!r}, which has its own parameter: use -p {key} ... instead")
        elif key not in fields:
            problems.append(f"has no field {key!r} (TrainConfig fields: {', '.join(fields)})")
        elif not _is_instance(value, hints[key]):
            problems.append(f"[{key!r}] = {value!r} is not {_type_name(hints[key])}")
    return "; ".join(problems) or None


_OWN_PARAMETERS = ("model", "code_length", "seed", "device")


def _is_instance(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, h) for h in typing.get_args(hint))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return isinstance(value, (tuple, list)) and all(_is_instance(x, args[0]) for x in value) if args else \
            isinstance(value, (tuple, list))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    name = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
    return ("an " if name[0] in "aeiou" else "a ") + name


# Rules by parameter name: a name means the same thing in every notebook.
RULES: dict[str, Rule] = {
    "dataset": _name, "model": _model, "models": each(_model), "config": _config,
    "shortcut_config": _config, "code_length": at_least(1), "shortcut_code_length": at_least(1),
    "seed": at_least(0), "seeds": each(at_least(0)), "natural_seeds": each(at_least(0)),
    "device": _device, "threads": at_least(0), "workers": at_least(1), "overrides": _overrides, "shortcut_overrides": _overrides,
    "num_parts": at_least(1), "image_size": at_least(16), "batch": at_least(1),
    "val_fraction": between(0.0, 0.9), "limit": at_least(0), "classes_shown": at_least(1),
    "samples_per_class": at_least(1), "topk": at_least(1), "num_examples": at_least(1), "shown": at_least(1),
    "methods": _methods, "shortcut_methods": _methods, "num_images": at_least(1), "ig_steps": at_least(1),
    "shortcut_strength": between(0.0, 1.0), "occlusion_window": between(0.0, 1.0),
    "occlusion_stride": between(0.0, 1.0), "bit": at_least(0), "attribution_batch": at_least(1),
    "part_radius": between(0.0, 1.0), "deletion_fractions": each(between(0.0, 1.0), unique=True),
    "num_permutations": at_least(1), "quantile": between(0.5, 1.0), "min_certainty": between(1, 4),
    "min_positives": at_least(1), "gallery_bit": at_least(-1), "gallery_size": at_least(1),
    "parts_timed": each(at_least(1)), "repeats": at_least(1),
}


# ----------------------------------------------------------------------------------- checking
def coerce(name: str, value: Any, declared: type) -> Any:
    """`value` as the declared type: text from `papermill -p` is parsed as a Python literal."""
    if declared is str or value is None:
        if declared is str and not isinstance(value, str):
            raise ParameterError(f"parameter {name}: {value!r} is not text; pass a string, e.g. -p {name} value")
        return value
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise ParameterError(f"parameter {name}: {value!r} is not {_type_name(declared)}; pass e.g. "
                                 f"-p {name} {_example(declared)}") from None
    if declared is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if declared is list and isinstance(value, tuple):
        value = list(value)
    ok = isinstance(value, declared) and not (declared is int and isinstance(value, bool))
    if not ok:
        raise ParameterError(f"parameter {name}: {value!r} is {_type_name(type(value))}, not {_type_name(declared)}; "
                             f"pass e.g. -p {name} {_example(declared)}")
    return value


def _example(declared: type) -> str:
    return {int: "12", float: "0.5", bool: "True", list: '"[0, 1]"', dict: "'{\"epochs\": 5}'"}.get(declared, "x")


# checks that need this machine's resources, and what replaces them for work that runs elsewhere
_ONLY_HERE = {"device": _device_name}


def check(values: dict[str, Any], declared: dict[str, type], local: bool = True) -> dict[str, Any]:
    """Coerce and check `values` (parameter name → value) of a notebook whose parameters cell
    declares `declared` (name → type); returns the coerced values or raises one `ParameterError`
    listing every problem. Names the notebook does not declare are refused too. `local=False`
    (work submitted to other machines) skips what depends on this machine, e.g. a GPU here."""
    problems, out = [], {}
    for name, value in values.items():
        if name not in declared:
            problems.append(f"parameter {name}: the notebook declares no such parameter "
                            f"(it has: {', '.join(sorted(declared))})")
            continue
        try:
            out[name] = value = coerce(name, value, declared[name])
        except ParameterError as err:
            problems.append(str(err))
            continue
        rule = RULES.get(name) if local else _ONLY_HERE.get(name, RULES.get(name))
        problem = rule(value) if rule is not None and value is not None else None
        if problem:
            problems.append(f"parameter {name} = {value!r} {problem}")
    if problems:
        raise ParameterError("\n".join(problems))
    return out


_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict}


def declared_types(notebook: str | os.PathLike) -> dict[str, type]:
    """The parameters a notebook declares and their types, read without running it (papermill)."""
    import papermill
    declared = papermill.inspect_notebook(str(notebook))
    return {name: _TYPES.get(info["inferred_type_name"], object) for name, info in declared.items()}


# ----------------------------------------------------------------------------------- the session
@dataclasses.dataclass
class Session:
    """What `start` sets up: read these instead of the raw parameters."""

    smoke: bool                      # shrink to seconds (asked for, or CI is set)
    runs_dir: pathlib.Path | None    # where results go (under <runs_dir>/smoke in smoke mode)
    figures_dir: pathlib.Path | None  # also save figures here (None: nowhere else); never figures/ in smoke mode
    device: "Any"                    # torch.device
    threads: int                     # torch CPU threads in use
    parameters: dict[str, Any]       # every parameter as given (after coercion), for results files


def smoke_mode(smoke_test: bool = False) -> bool:
    """On when asked or when CI is set (to anything but '', '0' or 'false')."""
    return bool(smoke_test) or os.environ.get("CI", "").lower() not in ("", "0", "false")


def smoke_paths(runs_dir: str, figures_dir: str, smoke: bool) -> tuple[str, str]:
    """Smoke runs write under `<runs_dir>/smoke` (figures too), never over real runs or figures/."""
    if not smoke:
        return runs_dir, figures_dir
    if not runs_dir:  # a notebook without a runs folder saves no figures in smoke mode
        return "", ""
    runs_dir = os.path.join(runs_dir, "smoke")
    return runs_dir, (os.path.join(runs_dir, "figures") if figures_dir else "")


def set_threads(threads: int = 0) -> int:
    """Set torch's CPU threads: `threads` if > 0, else $A2H_THREADS, else DEFAULT_THREADS."""
    import torch
    if threads <= 0:
        env = os.environ.get("A2H_THREADS", "")
        try:
            threads = int(env) if env else DEFAULT_THREADS
        except ValueError:
            raise ParameterError(f"A2H_THREADS={env!r} is not a whole number; unset it or set e.g. 2") from None
        if threads <= 0:
            raise ParameterError(f"A2H_THREADS={env!r} must be ≥ 1")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def start(namespace: dict[str, Any]) -> Session:
    """Check the notebook's parameters (see the module docstring) and set up; call it as
    `session = notebook.start(globals())` in the cell after the `parameters` cell."""
    annotations = namespace.get("__annotations__", {})
    declared = {name: t for name, t in annotations.items() if isinstance(t, type) and not name.startswith("_")}
    values = check({name: namespace[name] for name in declared if name in namespace}, declared)
    namespace.update(values)
    from a2hlib.training import resolve_device
    smoke = smoke_mode(values.get("smoke_test", False))
    runs_dir, figures_dir = smoke_paths(values.get("runs_dir", ""), values.get("figures_dir", ""), smoke)
    return Session(smoke=smoke, runs_dir=pathlib.Path(runs_dir) if runs_dir else None,
                   figures_dir=pathlib.Path(figures_dir) if figures_dir else None,
                   device=resolve_device(values.get("device", "auto")),
                   threads=set_threads(values.get("threads", 0)),
                   parameters={k: v for k, v in values.items() if isinstance(v, _PLAIN)})
