"""Install-time build of the JPEG region decoder (src/convnetlab/data/_jpeg_region.c), a plain C library
the package loads with ctypes (data/jpeg_region.py).

It links the system's libjpeg-turbo (Debian/Ubuntu: libjpeg-dev). The build is optional: without a C
compiler or the libjpeg headers the package installs without it, prints why, and decodes whole JPEGs
instead (the same pixels, more slowly).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src/convnetlab/data/_jpeg_region.c")


class JpegRegionBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        source = Path(self.root) / SOURCE
        target = source.with_suffix(".ctypes.so")  # not plain .so: Python would try to import it
        target.unlink(missing_ok=True)  # a failed rebuild must not leave an old library behind
        compiler = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc") or ""]
        if not compiler[0]:
            self.app.display_warning("convnetlab: no C compiler, so no JPEG region decoder (whole JPEGs are decoded)")
            return
        flags = [*shlex.split(os.environ.get("CPPFLAGS", "")), *shlex.split(os.environ.get("CFLAGS", "-O2")),
                 *shlex.split(os.environ.get("LDFLAGS", ""))]
        command = [*compiler, *flags, "-shared", "-fPIC", str(source), "-ljpeg", "-o", str(target)]
        try:
            result = subprocess.run(command, capture_output=True, text=True)
            reason = (result.stderr.strip().splitlines() or ["unknown error"])[-1] if result.returncode else ""
        except OSError as error:
            reason = str(error)
        if reason:
            target.unlink(missing_ok=True)
            self.app.display_warning(f"convnetlab: JPEG region decoder not built ({reason}); install libjpeg-dev "
                                     "and reinstall for faster training crops")
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["artifacts"].append(str(target.relative_to(self.root)))  # ignored by git, so named here
