"""What a fresh interpreter imports: for tests that keep a command's start-up light."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable


def imported_by(code: str, modules: Iterable[str]) -> list[str]:
    """Those of ``modules`` that are in ``sys.modules`` after a fresh interpreter runs ``code``."""
    names = sorted(set(modules))
    probe = f"{code}\nimport sys\nprint('\\n'.join(m for m in {names!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.split()
