"""Layering: convnetlab.data never imports convnetlab.analysis (analysis reads data, not the other way)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

CHECK = """
import importlib, pkgutil, sys
import convnetlab.data
modules = ["convnetlab.data"] + [f"convnetlab.data.{m.name}" for m in pkgutil.iter_modules(convnetlab.data.__path__)]
for name in modules:
    importlib.import_module(name)
print(" ".join(modules))
print(" ".join(sorted(m for m in sys.modules if m.startswith("convnetlab.analysis"))))
"""


def test_data_modules_import_without_analysis():
    """One fresh interpreter for every module of convnetlab.data (embeddings included, which once had a cycle)."""
    proc = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported, analysis = (proc.stdout.splitlines() + ["", ""])[:2]
    assert "convnetlab.data.embeddings" in imported.split() and "convnetlab.data.streaming" in imported.split()
    assert analysis == "", f"convnetlab.data pulled in {analysis}"
