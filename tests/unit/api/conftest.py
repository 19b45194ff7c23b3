"""Keep Hypothesis' storage out of the work tree.

pyproject's ``norecursedirs`` replaces pytest's defaults (which ignore ``.*``), so a
``.hypothesis`` directory in the repository root makes collection emit a warning that
``filterwarnings = error`` turns into a collection error for every test run. Hypothesis writes
that directory in the current directory unless told otherwise; point it at a temp dir instead.
"""

from __future__ import annotations

import os
import tempfile

from hypothesis.configuration import set_hypothesis_home_dir

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "kubelab-hypothesis"))
