"""What the benchmarks that run the shared LLM share: the project on sys.path, the shared SmolLM2-135M GGUF as the
default model (`$NLAB_MODELS_DIR` or ../shared/models) and ../shared/data as the data folder unless
`$NLAB_DATA_DIR` says otherwise. Imported first, for its effects."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
DEFAULT_MODEL = (Path(os.environ.get("NLAB_MODELS_DIR") or ROOT.parent / "shared" / "models")
                 / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf")
if not os.environ.get("NLAB_DATA_DIR") and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["NLAB_DATA_DIR"] = str(ROOT.parent / "shared" / "data")
DATA = Path(os.environ.get("NLAB_DATA_DIR") or ROOT.parent / "shared" / "data")
