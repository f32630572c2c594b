"""The pipeline's layering: orchestration (sweep, review, store, CLI) never imports torch at import time."""

from __future__ import annotations

import subprocess
import sys


def test_orchestration_side_does_not_import_torch():
    code = (
        "import sys, hpcsweep.cli, hpcsweep.sweep, hpcsweep.review, hpcsweep.store, hpcsweep.config, hpcsweep.data;"
        "from hpcsweep.sweep import expand, plan;"
        "heavy = sorted(m for m in ('torch', 'uproot', 'pythia8mc', 'fastjet', 'matplotlib') if m in sys.modules);"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
