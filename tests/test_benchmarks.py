"""The benchmark scripts' command line: help and a clear usage error before anything slow runs; the reader's
limits on the fixtures. (They print figures and assert nothing; their figures are not tested here.)"""

import subprocess
import sys

import pytest

from fracture_app import config

SCRIPTS = ("altered_xrays", "orientation_effects", "reader_limits")


def run_benchmark(name: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(config.REPO_ROOT / "benchmarks" / f"{name}.py"), *arguments],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_benchmark_explains_itself_and_refuses_a_missing_folder_in_one_line(name, tmp_path):
    helped = run_benchmark(name, "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage:") and "Prints figures" in helped.stdout
    refused = run_benchmark(name, str(tmp_path / "nowhere"))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].endswith(f"error: not a folder: {tmp_path / 'nowhere'}")


def test_the_reader_limits_benchmark_reads_the_fixtures_and_counts_their_incomplete_file():
    finished = run_benchmark("reader_limits")
    assert finished.returncode == 0, finished.stderr
    assert "incomplete files read: 1, missing 8% to 8% of their picture" in finished.stdout
