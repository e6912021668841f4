"""``tokenmill.prepare`` is the function whatever is imported first, and the package keeps every old name.

Each order runs in a fresh interpreter: the bug this guards against only shows on the first import of the
subpackage, which one pytest process can do only once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")

CHECK = """
import inspect, sys, tokenmill
assert inspect.isfunction(tokenmill.prepare), tokenmill.prepare
assert tokenmill.prepare is sys.modules["tokenmill.prepare"].prepare
assert tokenmill.prepare.__module__ == "tokenmill.prepare.coordinator"
from tokenmill import prepare
assert inspect.isfunction(prepare)
"""

ORDERS = {
    "package first": "import tokenmill",
    "class from the subpackage first": "from tokenmill.prepare import PrepareConfig",
    "function from the subpackage first": "from tokenmill.prepare import prepare",
    "lazy attribute first": "import tokenmill; tokenmill.PrepareConfig",
    "a submodule first": "import tokenmill.prepare.worker",
    "the command line first": "import tokenmill.cli.prepare; from tokenmill.prepare import PrepareSummary",
    "the old Ray module first": "import tokenmill.ray_executor",
    "from-import of the package": "from tokenmill import prepare as p; import tokenmill.prepare.config",
}


@pytest.mark.parametrize("first", sorted(ORDERS))
def test_tokenmill_prepare_is_the_function_in_every_import_order(first):
    code = ORDERS[first] + "\n" + CHECK
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_old_names_stay_importable():
    from tokenmill.prepare import (  # noqa: F401
        PrepareConfig,
        PrepareSummary,
        SourceError,
        init_worker,
        prepare,
        process_unit,
    )
    from tokenmill.ray_executor import RayExecutor, RayWorkerLost  # noqa: F401
