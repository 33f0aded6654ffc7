"""Where the shared platform facts live: next to the project root (`../shared`)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("XTM_SHARED_DIR", PROJECT_ROOT.parent / "shared"))
SHARED_VECTORS = SHARED / "vectors"
OPENCTI_SCHEMA = SHARED / "opencti" / "opencti.graphql"
RUST_DEFAULT_CONFIG = SHARED / "reference" / "rust-composer-default.yaml"
