# SPDX-License-Identifier: Apache-2.0
"""examples/vllm_warm_restart.py: serve, SIGKILL, restart warm."""
import json
import os
import subprocess
import sys

EXAMPLE = os.path.join(os.environ.get("KVBM_EXAMPLES", os.path.join(
    os.path.dirname(__file__), "..", "..", "examples")), "vllm_warm_restart.py")


def run(*args):
    proc = subprocess.run([sys.executable, EXAMPLE, *args], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_warm_restart_beats_cold_start(tmp_path):
    # Part of the trace, a tier that must evict: the run stays short.
    out = json.loads(run("--requests", "1600", "--blocks", "4096", "--json",
                         "--catalog", str(tmp_path / "tier.db")))
    assert 0 < out["restored_blocks"] <= out["blocks"]
    assert out["served_before_kill"] == 800 and out["rest_requests"] == 800
    # The restored index serves hits a cold tier cannot have, most of all
    # right after the restart, while a cold tier is still filling.
    assert out["warm_window_hit_rate"] > out["cold_window_hit_rate"]
    assert out["warm_hit_rate"] >= out["cold_hit_rate"]


def test_human_output(tmp_path):
    text = run("--requests", "200", "--blocks", "1024", "--catalog", str(tmp_path / "t.db"))
    assert "then SIGKILL" in text and "warm after SIGKILL" in text
