"""Named datasets: `load("digits")`, `load("tinyshakespeare", data_dir)`, ... (see registry.py)."""

from phases.core.data.registry import REGISTRY, load, locate, names, spec

__all__ = ["REGISTRY", "load", "locate", "names", "spec"]
