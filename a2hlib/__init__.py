"""a2hlib: the library behind the A²-Net++ hashing workbook.

Start with `notebooks/00_overview.ipynb`; docs/ARCHITECTURE.md lists the modules. Modules that
need torchvision import it through `a2hlib._compat`, which makes it work on a CPU-only torch.
"""
__version__ = "0.1.0"
