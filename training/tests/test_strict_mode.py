"""IPET_TEST_STRICT=1 (scripts/test.sh, so CI) turns every skip into a failure: a runtime
`pytest.skip` (the tests' missing-binary path), a skip mark and a module skipped at collection
(`pytest.importorskip`). Checked by running pytest on small test files with this directory's
conftest.py, once without the variable and once with it."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

CONFTEST = Path(__file__).resolve().parent / "conftest.py"

SKIPS = textwrap.dedent("""
    import pytest

    def test_passes():
        pass

    def test_skips_at_run_time():
        pytest.skip("ipet binary absent")

    @pytest.mark.skip(reason="marked")
    def test_marked_skip():
        pass

    @pytest.mark.xfail(reason="known", strict=True)
    def test_expected_failure():
        assert False
""")
IMPORT_SKIP = textwrap.dedent("""
    import pytest

    pytest.importorskip("ipet_no_such_module")

    def test_never_runs():
        pass
""")


def _pytest(tmp_path: Path, files: dict[str, str], strict: "str | None"):
    d = tmp_path / ("strict" if strict else "lenient")
    d.mkdir()
    # This directory's conftest.py, loaded under another name so that its hooks are the ones tested.
    (d / "conftest.py").write_text(textwrap.dedent(f"""
        import importlib.util

        _spec = importlib.util.spec_from_file_location("ipet_tests_conftest", {str(CONFTEST)!r})
        _mod = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_mod)
        globals().update({{k: v for k, v in vars(_mod).items() if k.startswith("pytest_")}})
    """))
    for name, text in files.items():
        (d / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "IPET_TEST_STRICT"}
    if strict is not None:
        env["IPET_TEST_STRICT"] = strict
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(d)],
                          cwd=d, env=env, capture_output=True, text=True, timeout=120)


def test_without_the_variable_skips_are_skips(tmp_path):
    p = _pytest(tmp_path, {"test_skips.py": SKIPS, "test_import_skip.py": IMPORT_SKIP}, None)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 passed, 3 skipped, 1 xfailed" in p.stdout, p.stdout


def test_strict_fails_on_every_skip_at_run_time(tmp_path):
    p = _pytest(tmp_path, {"test_skips.py": SKIPS}, "1")
    assert p.returncode == 1, p.stdout + p.stderr
    # the skip mark acts in the test's setup, so pytest counts its failure as an error
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in p.stdout, p.stdout
    assert "IPET_TEST_STRICT=1" in p.stdout and "ipet binary absent" in p.stdout, p.stdout


def test_strict_fails_on_a_module_skipped_at_collection(tmp_path):
    p = _pytest(tmp_path, {"test_import_skip.py": IMPORT_SKIP}, "1")
    assert p.returncode != 0, p.stdout + p.stderr
    assert "1 error" in p.stdout and "ipet_no_such_module" in p.stdout, p.stdout


def test_strict_0_is_off(tmp_path):
    p = _pytest(tmp_path, {"test_skips.py": SKIPS}, "0")
    assert p.returncode == 0 and "2 skipped" in p.stdout, p.stdout + p.stderr
