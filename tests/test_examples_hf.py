"""examples/hf_quickstart.py runs as documented (offline, on the demo model that ships with the package)."""

import re
import subprocess
import sys

from conftest import ROOT


def test_hf_quickstart_runs_offline_and_shows_both_decodings():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "hf_quickstart.py"), "--max-new-tokens", "120"],
        capture_output=True,
        text=True,
        timeout=600,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    headers = re.findall(r"^--- (without TIP|with TIP \(alpha=3.0, beta=600\)): (\d+) tokens, switches at \[(.*)\]$", result.stdout, re.MULTILINE)
    assert [h[0] for h in headers] == ["without TIP", "with TIP (alpha=3.0, beta=600)"]
    assert all(int(h[1]) > 0 for h in headers)
