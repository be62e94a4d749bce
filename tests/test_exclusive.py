"""The xdist turn lock: an exclusive test waits for the running ones and runs alone; ordinary
tests that ask after it wait behind it, even while others still share the lock."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from _exclusive import turn

pytest_plugins = ["pytester"]


def _hold(folder, exclusive, events, name, release):
    with turn(folder, exclusive):
        events.append(f"{name} in")
        release.wait(10)
        events.append(f"{name} out")


def test_an_exclusive_turn_runs_alone_and_ordinary_ones_queue_behind_it(tmp_path):
    events: list = []
    releases = {name: threading.Event() for name in ("first", "exclusive", "later")}
    threads = {}
    for name, exclusive in (("first", False), ("exclusive", True), ("later", False)):
        threads[name] = threading.Thread(target=_hold, daemon=True, args=(
            str(tmp_path), exclusive, events, name, releases[name]))
        threads[name].start()
        time.sleep(0.3)  # each asks after the one before holds or waits
    assert events == ["first in"]  # the exclusive waits; the later shared one waits behind it
    releases["first"].set()
    time.sleep(0.3)
    assert events == ["first in", "first out", "exclusive in"]
    releases["exclusive"].set()
    releases["later"].set()
    for thread in threads.values():
        thread.join(10)
    assert events == ["first in", "first out", "exclusive in", "exclusive out", "later in",
                      "later out"]


#: a run of three modules: one exclusive, two ordinary; each test logs its start and end
_LOGGED = """
import time, pytest
{mark}
@pytest.mark.parametrize("i", range({n}))
def test_logged(i):
    with open({log!r}, "a") as f:
        f.write(f"{{time.monotonic():.4f}} {name}{{i}} start\\n")
    time.sleep({sleep})
    with open({log!r}, "a") as f:
        f.write(f"{{time.monotonic():.4f}} {name}{{i}} end\\n")
"""


def test_under_xdist_an_exclusive_module_never_runs_beside_another_test(pytester):
    """The repository's conftest.py, as wired into a two-worker run: no test overlaps one of
    the ``exclusive`` module's, while the ordinary ones do overlap each other (one module
    twice as long as the other: a worker is free for the exclusive one while b runs)."""
    root = Path(__file__).resolve().parent.parent
    pytester.makeconftest((root / "conftest.py").read_text())
    pytester.mkdir("tests").joinpath("_exclusive.py").write_text(
        (root / "tests" / "_exclusive.py").read_text())
    pytester.makeini("[pytest]\nmarkers = exclusive: alone\n")
    log = str(pytester.path / "log")
    for name, mark, n, sleep in (("ex", "pytestmark = pytest.mark.exclusive", 2, 0.4),
                                 ("a", "", 4, 0.15), ("b", "", 12, 0.15)):
        pytester.makepyfile(**{f"test_{name}": _LOGGED.format(mark=mark, n=n, sleep=sleep,
                                                            log=log, name=name)})
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadscope",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=18)
    running: set = set()
    beside_exclusive = ordinary_pairs = 0
    for line in sorted(Path(log).read_text().splitlines(), key=lambda s: float(s.split()[0])):
        _, test, event = line.split()
        if event == "end":
            running.discard(test)
            continue
        if running and (test.startswith("ex") or any(t.startswith("ex") for t in running)):
            beside_exclusive += 1
        ordinary_pairs += bool(running)
        running.add(test)
    assert beside_exclusive == 0
    assert ordinary_pairs > 0  # the run was parallel: the check above could have failed
