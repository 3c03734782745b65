"""What the command line shows and where the rest goes: the instance folder, stderr routed to a log
file, the progress display on a pipe and on a terminal."""

import io
import os
import re
import time

import pytest

from fruit_assets.cli.console import (
    NORMAL,
    QUIET,
    VERBOSE,
    ProgressDisplay,
    Terminal,
    prepare_dagster_home,
    run_log_path,
)
from fruit_assets.progress import Progress
from fruit_assets_tests.harness import REPO


@pytest.fixture
def no_dagster_home(monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", "placeholder")  # recorded, so the value set by the code is undone
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_without_dagster_home_a_local_one_is_made_with_the_repository_settings(no_dagster_home):
    said = []
    home = prepare_dagster_home(said.append)
    expected = str(no_dagster_home / ".dagster_home")
    assert home == expected and os.environ["DAGSTER_HOME"] == expected
    with open(os.path.join(REPO, "dagster.yaml")) as handle:
        assert (no_dagster_home / ".dagster_home" / "dagster.yaml").read_text() == handle.read()
    assert said == [f"DAGSTER_HOME not set: using {expected}",
                    f"wrote the repository's instance settings to {expected}/dagster.yaml"]


def test_an_existing_dagster_yaml_is_kept_and_nothing_is_said(no_dagster_home):
    config = no_dagster_home / ".dagster_home" / "dagster.yaml"
    config.parent.mkdir()
    config.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(config.parent)
    said = []
    assert prepare_dagster_home(said.append) == str(config.parent)
    assert config.read_text() == "telemetry:\n  enabled: false\n" and said == []


def test_run_logs_are_named_by_time_and_process_under_the_home(tmp_path):
    path = run_log_path(str(tmp_path))
    assert os.path.dirname(path) == str(tmp_path / "logs")
    assert re.fullmatch(rf"materialize-\d{{8}}-\d{{6}}-{os.getpid()}\.log", os.path.basename(path))


def test_stderr_goes_to_the_log_file_and_errors_still_reach_the_user(tmp_path, capfd):
    log = tmp_path / "logs" / "run.log"
    with Terminal(NORMAL, str(log)) as terminal:
        os.write(2, b"log4j: what a JVM prints\n")
        terminal.say("[1/4] convert_model")
        terminal.error("the bucket does not exist")
    os.write(2, b"after the run\n")
    out, err = capfd.readouterr()
    assert out == "[1/4] convert_model\n"
    assert err == "error: the bucket does not exist\nafter the run\n"
    assert log.read_text() == "log4j: what a JVM prints\n"


def test_quiet_says_only_what_it_must_and_verbose_leaves_stderr_alone(tmp_path, capfd):
    with Terminal(QUIET, str(tmp_path / "quiet.log")) as terminal:
        terminal.say("a run line")
        terminal.always("summary")
    assert capfd.readouterr().out == "summary\n"
    with Terminal(VERBOSE, str(tmp_path / "verbose.log")):
        os.write(2, b"dagster event\n")
    assert capfd.readouterr().err == "dagster event\n"
    assert not (tmp_path / "verbose.log").exists()


def test_on_a_pipe_progress_is_a_plain_line_every_tenth_of_the_work_and_the_last(tmp_path):
    stream = io.StringIO()
    display = ProgressDisplay(Terminal(NORMAL, str(tmp_path / "log")), "embedding", stream=stream)
    assert not display.interactive
    for done in [0, 5, 9, 10, 10, 15, 20, 29, 31, 97, 100]:
        display(Progress(done, 100, done / 5))
    display.close()
    assert stream.getvalue().splitlines() == [
        "   embedding: 0/100 images (0%), 0.0 images/s, elapsed 0:00, ETA ?",
        "   embedding: 10/100 images (10%), 5.0 images/s, elapsed 0:02, ETA 0:18",
        "   embedding: 20/100 images (20%), 5.0 images/s, elapsed 0:04, ETA 0:16",
        "   embedding: 31/100 images (31%), 5.0 images/s, elapsed 0:06, ETA 0:14",
        "   embedding: 97/100 images (97%), 5.0 images/s, elapsed 0:19, ETA 0:01",
        "   embedding: 100/100 images (100%), 5.0 images/s, elapsed 0:20, ETA 0:00",
    ]


def test_quiet_shows_no_progress(tmp_path):
    stream = io.StringIO()
    display = ProgressDisplay(Terminal(QUIET, str(tmp_path / "log")), stream=stream)
    display(Progress(0, 10, 0.0))
    display(Progress(10, 10, 1.0))
    assert stream.getvalue() == ""


class TerminalLike(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_progress_is_a_bar_redrawn_in_place_and_gone_when_done(tmp_path):
    stream = TerminalLike()
    display = ProgressDisplay(Terminal(NORMAL, str(tmp_path / "log")), "embedding", stream=stream)
    assert display.interactive
    for done in range(0, 41, 10):
        display(Progress(done, 40, done / 8))
        time.sleep(0.15)  # past tqdm's minimum redraw interval
    shown = stream.getvalue()
    assert "\r" in shown and "   embedding:" in shown and "30/40" in shown and "img/s" in shown
    assert "images (" not in shown  # no plain progress lines


def test_a_second_run_on_the_same_display_gets_its_own_lines(tmp_path):
    stream = io.StringIO()
    display = ProgressDisplay(Terminal(NORMAL, str(tmp_path / "log")), "embedding", stream=stream)
    for _run in range(2):
        for done in range(0, 13, 3):
            display(Progress(done, 12, done / 4))
        display.close()
    assert [line.split(" images")[0] for line in stream.getvalue().splitlines()] == [
        f"   embedding: {done}/12" for _run in range(2) for done in range(0, 13, 3)]
