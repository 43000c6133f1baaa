"""Helpers shared by the reference-fixture scripts in tools/reference/.

These scripts are developer tooling only: CI never runs Python. Their
outputs are committed under engine/tests/fixtures/ and read by Rust tests.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "engine" / "tests" / "fixtures"

# Significant digits used for floats in JSON fixtures. 7 digits is below f32
# round-trip precision (9) but far below any tolerance the engine tests use,
# and it keeps the committed files small.
FLOAT_DIGITS = 7


def versions() -> dict:
    """Versions of the libraries that produced a fixture."""
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "tokenizers", "safetensors", "gguf", "numpy"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "unknown")
        except ImportError:
            pass
    if "gguf" in out and out["gguf"] == "unknown":
        try:
            from importlib.metadata import version

            out["gguf"] = version("gguf")
        except Exception:  # pragma: no cover - best effort only
            pass
    return out


def round_floats(obj, digits: int = FLOAT_DIGITS):
    """Recursively round floats to `digits` significant digits."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [round_floats(v, digits) for v in obj]
    return obj


def write_json(path: Path, obj, *, compact: bool = True) -> None:
    """Write JSON deterministically (sorted keys off: insertion order is kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if compact:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    else:
        text = json.dumps(obj, indent=2, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")


def deterministic_torch(threads: int = 1) -> None:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
