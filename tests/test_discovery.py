"""Adding a strategy is one file: a sampler module dropped into a copy of the package is seen
by ``mtsearch dims``, by a ``choices: all`` space and by the contract tests, with no other edit."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mtsearch.samplers import SAMPLERS
from tests.helpers import ROOT, real_data_dir

THROWAWAY = '''\
"""A sampler written by a test: every task each step, in reverse order."""

from collections.abc import Iterator

from mtsearch.samplers.base import SAMPLERS, Sampler


@SAMPLERS.register("zz_throwaway")
class Throwaway(Sampler):
    """Every task each step, last task first (written by tests/test_discovery.py)."""

    def schedule(self) -> Iterator[list[str]]:
        while True:
            yield list(reversed(self.tasks))
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project (package, tests, spaces) with one new file: samplers/zz_throwaway.py."""
    dest = tmp_path_factory.mktemp("copy") / "project"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("mtsearch", "tests", "search_spaces"):
        shutil.copytree(ROOT / part, dest / part, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    data = real_data_dir()
    if data is not None:  # the copy's tests find the data where the checkout's do
        (dest / "data").mkdir()
        (dest / "data" / "cs224n").symlink_to(data)
    (dest / "mtsearch" / "samplers" / "zz_throwaway.py").write_text(THROWAWAY)
    return dest


def run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project)}
    proc = subprocess.run(
        [sys.executable, *args], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_the_checkout_itself_has_no_throwaway():
    assert "zz_throwaway" not in SAMPLERS


def test_mtsearch_dims_lists_it(project):
    out = run(project, "-m", "mtsearch.cli", "dims").stdout
    assert "sampler=zz_throwaway: Every task each step, last task first" in out
    sampler_row = next(line for line in out.splitlines() if line.startswith("sampler "))
    assert "zz_throwaway" in sampler_row


def test_a_choices_all_space_includes_it(project, runs):
    space = project / "throwaway.yaml"
    space.write_text(
        textwrap.dedent(
            """\
            name: throwaway
            base:
              set: {model: tiny, max_steps: 4}
            dimensions:
              sampler:
                choices: all
            algorithm: grid
            """
        )
    )
    code = (
        "import json, sys, mtsearch; from mtsearch.sweep.space import load_space;"
        "print(json.dumps([mtsearch.__file__, [p['sampler'] for p in load_space(sys.argv[1]).grid()]]))"
    )
    package, samplers = json.loads(run(project, "-c", code, str(space)).stdout)
    assert Path(package).is_relative_to(project)  # the copy was imported, not the checkout
    assert samplers == sorted([*SAMPLERS.names(), "zz_throwaway"])


@pytest.mark.e2e  # a second pytest in a subprocess
def test_the_contract_tests_cover_it(project, runs):
    proc = run(
        project,
        "-m",
        "pytest",
        "-q",
        "-rA",
        "-p",
        "no:cacheprovider",
        "tests/contracts",
        "-k",
        "zz_throwaway",
    )
    passed = set(re.findall(r"^PASSED (\S+)", proc.stdout, re.M))
    expected = {
        "tests/contracts/test_registries.py::test_every_strategy_is_documented_and_has_default_args",
        "tests/contracts/test_registries.py::test_every_strategy_runs_under_the_default_config",
        "tests/contracts/test_registries.py::test_a_knob_of_another_strategy_is_refused_naming_both_fields",
        "tests/contracts/test_samplers.py::test_deterministic_per_seed_and_only_names_known_tasks",
        "tests/contracts/test_samplers.py::test_expected_examples_per_step_matches_what_the_batches_hold",
        "tests/contracts/test_samplers.py::test_an_epoch_is_a_whole_number_of_steps_that_does_not_depend_on_the_budget",
    }
    if real_data_dir() is not None:
        expected.add("tests/contracts/test_samplers.py::test_trains_end_to_end")
    assert {p.split("[")[0] for p in passed} == expected, proc.stdout[-3000:]
    assert all("zz_throwaway" in p for p in passed)
    assert " failed" not in proc.stdout and " error" not in proc.stdout
