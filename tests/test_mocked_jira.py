"""The `mocked_jira` fixture itself: an answer a test registers and the code never asks for fails the test, unless
it is registered as one that must not be asked (`mocked_jira.must_not_be_asked`: then asking for it fails the test),
or the test says why its answers may go unused (`@pytest.mark.stubs_may_go_unused(reason=...)`; a reason is
required).

Each case is a small test file run by a real pytest in a subprocess with this repository's conftest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

HEADER = """
import pytest
import requests

from tests.conftest import mocked_jira, test_jiras_say_who_they_are  # noqa: F401 - the fixtures under test

STUB = "https://jira.example.com/jira/rest/api/2/myself"
"""


def run_pytest(tmp_path, body: str) -> subprocess.CompletedProcess:
    case = tmp_path / "test_case.py"
    case.write_text(HEADER + body)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "kendis_integration.settings_test"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull,
                           "--rootdir", str(tmp_path), "-W", "ignore::pytest.PytestUnknownMarkWarning", str(case)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_an_unused_answer_fails_the_test(tmp_path):
    result = run_pytest(tmp_path, """
def test_registers_an_answer_nobody_asks_for(mocked_jira):
    mocked_jira.get(STUB, json={"name": "jadmin"})
""")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Not all requests have been executed" in result.stdout
    assert "1 passed, 1 error" in result.stdout


def test_used_answers_and_the_anonymous_server_info_fallback_pass(tmp_path):
    result = run_pytest(tmp_path, """
def test_asks_for_what_it_registered(mocked_jira):
    mocked_jira.get(STUB, json={"name": "jadmin"})
    assert requests.get(STUB).json() == {"name": "jadmin"}
""")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@pytest.mark.parametrize("where", ["on the test", "on its module"])
def test_a_test_marked_stubs_may_go_unused_with_a_reason_passes_with_an_unused_answer(tmp_path, where):
    mark = '@pytest.mark.stubs_may_go_unused(reason="in case")\n' if where == "on the test" else ""
    module = 'pytestmark = pytest.mark.stubs_may_go_unused(reason="in case")\n' if where == "on its module" else ""
    result = run_pytest(tmp_path, f"""
{module}
{mark}def test_an_answer_there_in_case(mocked_jira):
    mocked_jira.post(STUB, json={{}})
""")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@pytest.mark.parametrize("mark", ["@pytest.mark.stubs_may_go_unused", '@pytest.mark.stubs_may_go_unused(reason=" ")'])
def test_the_marker_without_a_reason_fails_the_test_and_says_so(tmp_path, mark):
    result = run_pytest(tmp_path, f"""
{mark}
def test_an_answer_there_in_case(mocked_jira):
    mocked_jira.post(STUB, json={{}})
""")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "stubs_may_go_unused needs a reason" in result.stdout
    assert "1 error" in result.stdout


def test_an_answer_that_must_not_be_asked_passes_unused_and_the_test_stays_strict_for_the_others(tmp_path):
    result = run_pytest(tmp_path, """
def test_a_retry_that_must_not_happen(mocked_jira):
    mocked_jira.get(STUB, json={"name": "jadmin"})
    mocked_jira.must_not_be_asked(mocked_jira.get(STUB, json={"name": "retried"}))
    assert requests.get(STUB).json() == {"name": "jadmin"}

def test_an_unused_answer_beside_it_still_fails(mocked_jira):
    mocked_jira.must_not_be_asked(mocked_jira.post(STUB, json={}))
    mocked_jira.get(STUB, json={"name": "jadmin"})
""")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 passed, 1 error" in result.stdout
    assert "ERROR test_case.py::test_an_unused_answer_beside_it_still_fails" in result.stdout
    assert "Not all requests have been executed [('GET', " in result.stdout


def test_an_answer_that_must_not_be_asked_fails_the_test_when_it_is_asked(tmp_path):
    result = run_pytest(tmp_path, """
def test_a_request_that_must_not_be_made(mocked_jira):
    mocked_jira.must_not_be_asked(mocked_jira.post(STUB, json={}))
    requests.post(STUB)
""")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "POST https://jira.example.com/jira/rest/api/2/myself must not be asked for; it was asked 1 time(s)" \
        in result.stdout
    assert "1 passed, 1 error" in result.stdout
