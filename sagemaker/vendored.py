"""Puts the code's vendored dependencies first on sys.path; every container entry point imports it first.

The SageMaker images bring Python, torch and boto3. Everything else DiscScope imports
(`container-requirements.txt` beside this file) travels with the code in `lib/`, installed at build time for
the container's Python, so no job and no endpoint runs pip at start or needs the internet for it.
In a source checkout there is no `lib/` and nothing changes.
"""

from __future__ import annotations

import sys
from pathlib import Path

LIB = Path(__file__).resolve().parent / "lib"

if LIB.is_dir() and str(LIB) not in sys.path:
    sys.path.insert(0, str(LIB))
