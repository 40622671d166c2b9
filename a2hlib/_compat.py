"""Import torchvision on a CPU-only torch (see docs/ARCHITECTURE.md and README "Install").

PyPI has no CPU build of torchvision 0.28.0; its only Linux wheel is built for CUDA. With a CPU torch
its compiled extension (`_C.so`) cannot load, and `import torchvision` then fails inside
`_meta_registrations.py`, which registers fake kernels for `torchvision::nms` / `torchvision::qnms`
without checking that the extension loaded. We define those two operator schemas first, only when
loading the extension fails, so models, `transforms.v2` and `datasets` work. On an install where the
extension loads (a matching CUDA torch) nothing is changed.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import pathlib
import sys

import torch

log = logging.getLogger(__name__)

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_fragment = None  # keep the Library object alive: dropping it would unregister the schemas
extension_loaded: bool | None = None


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    candidates = sorted(pathlib.Path(spec.origin).parent.glob("_C*.so")) + sorted(
        pathlib.Path(spec.origin).parent.glob("_C*.pyd"))
    for lib in candidates:
        try:
            torch.ops.load_library(str(lib))
            return True
        except (OSError, RuntimeError) as err:
            log.debug("torchvision extension %s did not load: %s", lib, err)
    return False


def prepare_torchvision() -> bool:
    """Define the nms/qnms schemas if, and only if, torchvision's extension does not load.

    Returns whether the extension loaded. Safe to call more than once.
    """
    global _fragment, extension_loaded
    if extension_loaded is None:
        extension_loaded = _extension_loads()
        if not extension_loaded:
            _fragment = torch.library.Library("torchvision", "FRAGMENT")
            for name, schema in _SCHEMAS.items():
                try:
                    _fragment.define(schema)
                except RuntimeError:  # already defined by someone else
                    pass
            log.info("torchvision's compiled extension did not load; defined nms/qnms schemas so that "
                     "models and transforms work (decode images with PIL, not torchvision.io)")
    return extension_loaded


def import_torchvision():
    """Return the `torchvision` module, applying the CPU workaround only when it is needed."""
    if "torchvision" not in sys.modules:
        prepare_torchvision()
    return importlib.import_module("torchvision")


def __getattr__(name: str):
    # `from a2hlib._compat import torchvision` imports torchvision lazily, through the workaround.
    if name == "torchvision":
        return import_torchvision()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
