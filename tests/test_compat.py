"""The CPU-torch / CUDA-torchvision workaround applies only when torchvision's extension fails to load."""
import subprocess
import sys
import textwrap

from a2hlib import _compat


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_models_and_transforms_import_through_the_shim():
    tv = _compat.import_torchvision()
    assert hasattr(tv.models, "resnet50") and hasattr(tv.transforms, "v2")
    if not _compat.extension_loaded:
        assert _compat._fragment is not None  # the schemas were defined because the extension did not load


def test_nothing_is_defined_when_the_extension_loads():
    # Pretend the compiled extension loads (as on a matching CUDA install): the shim must define nothing.
    result = run("""
        import torch
        torch.ops.load_library = lambda path: None
        from a2hlib import _compat
        print(_compat.prepare_torchvision(), _compat._fragment is None, "torchvision" in __import__("sys").modules)
    """)
    assert result.stdout.split() == ["True", "True", "False"], result.stderr


def test_schemas_are_defined_when_the_extension_fails():
    result = run("""
        import torch
        def fail(path):
            raise OSError("undefined symbol")
        torch.ops.load_library = fail
        from a2hlib._compat import torchvision
        from a2hlib import _compat
        print(_compat.extension_loaded, _compat._fragment is not None, hasattr(torchvision.models, "resnet18"))
    """)
    assert result.stdout.split() == ["False", "True", "True"], result.stderr
