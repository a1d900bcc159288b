"""Deferred optional imports: a stand-in until first use, then the real module."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys, http
from safepacs.dicom.deferred import defer
assert "fractions" not in sys.modules and "http.cookies" not in sys.modules
defer(("fractions", "http.cookies", "no_such_module_here"))
import fractions, http.cookies
assert "no_such_module_here" not in sys.modules
try:
    import no_such_module_here
except ImportError:
    pass
else:
    raise SystemExit("a missing module imported")
stand_in = sys.modules["fractions"]
assert type(stand_in).__name__ == "_Deferred", type(stand_in)
assert "Fraction" not in vars(stand_in)       # not executed yet
assert fractions.Fraction(1, 2) * 2 == 1      # first use loads it
assert type(sys.modules["fractions"]).__name__ == "module"
assert stand_in.Fraction is sys.modules["fractions"].Fraction
assert type(sys.modules["http.cookies"]).__name__ == "_Deferred"
from http.cookies import SimpleCookie          # from-import loads the real module too
assert SimpleCookie("a=b")["a"].value == "b"
assert http.cookies.SimpleCookie is SimpleCookie
print("ok")
"""


def test_deferred_modules_load_on_first_use():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("name", ["requests", "tqdm", "urllib.request"])
def test_deid_start_up_does_not_load_the_downloader(name):
    code = (
        f"import sys, safepacs.deid.batch; m = sys.modules.get({name!r}); "
        "print(m is None or type(m).__name__ == '_Deferred')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
