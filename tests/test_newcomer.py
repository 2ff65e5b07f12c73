"""Issue 16, items 12-14: what a newcomer runs first works as the README says."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "polars", "numpy", "scipy", "sklearn", "pydantic", "yaml")


def readme_commands() -> list[str]:
    """The first screen's bash block, without comments and blank lines."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]


def test_readme_has_the_two_commands_and_ci_runs_its_test_command():
    setup, tests = readme_commands()
    assert "pip install torch==2.13.0" in setup and setup.endswith("gprec train")
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == tests  # CI calls exactly what the README tells a newcomer to run


def test_readme_says_what_a_cpu_only_user_installs():
    text = (ROOT / "README.md").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
    assert "TIMING_" not in text  # the timing placeholders were filled with measured figures


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").is_file(), reason="no .venv here")
def test_readme_test_command_works_without_an_active_venv():
    """A new shell: no VIRTUAL_ENV, a PATH without the venv. The command still finds gprec."""
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    tests = readme_commands()[1]
    proc = subprocess.run(
        [*tests.split(), "--collect-only", "-q", "tests/test_layers.py", "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"test_layers.py(::|: \d+)", proc.stdout)  # collected: gprec imported


def test_real_data_tests_look_where_gprec_data_points(tmp_path):
    env = {**os.environ, "GPREC_DATA": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider",
         "tests/test_loaders.py::test_real_movielens_cardinalities"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    assert f"MovieLens data absent from {tmp_path}" in proc.stdout


def test_the_cli_imports_nothing_heavy_until_a_command_runs():
    """`gprec --help` must be instant: no torch, polars, scipy, ... at import or for --help."""
    code = (
        "import sys, contextlib, io\n"
        "from gprec.cli.main import build_parser\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    build_parser().parse_args(['--help'])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_docs_cite_the_projects_own_model_description_and_quote_brackets():
    """No reference to a spec the repository does not ship; `[...]` model lists are quoted
    (zsh expands an unquoted `mlp[dropout=0.2]` as a glob pattern)."""
    texts = {p: p.read_text() for p in [ROOT / "README.md", *ROOT.glob("configs/**/*.yaml")]}
    texts |= {p: p.read_text() for p in (ROOT / "src").rglob("*.py")}
    assert [str(p) for p, t in texts.items() if re.search(r"\bSPEC\b", t)] == []
    assert (ROOT / "docs" / "gprec.md").is_file()
    for line in (ROOT / "README.md").read_text().splitlines():
        if "--models " in line and "[" in line.split("--models ", 1)[1]:
            assert re.search(r"--models '[^']*\[", line), line
