"""Ctrl-C during short_train always stops the run: a real SIGINT to a real pytest process.

The user's loss function drops an object with a weakref callback that stays busy for a while, as
garbage collection does between any two lines of a real training loop: most Ctrl-Cs then land
inside the callback, where Python itself can only print the KeyboardInterrupt and carry on.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from modelviz_testing import run_dir_of
from user_runs import USER_PRELUDE, folder_of, train_record

LONG_RUN = USER_PRELUDE + """
import os
import time
import weakref
from pathlib import Path


class Token:
    pass


def busy_weakref_callback(ref):
    end = time.perf_counter() + 0.02
    while time.perf_counter() < end:
        pass


def loss_fn(output, target):
    token = Token()
    ref = weakref.ref(token, busy_weakref_callback)
    del token  # the callback runs here
    return F.cross_entropy(output, target)


def training_started(model, step):
    Path(os.environ["TRAINING_STARTED"]).touch()
    return {}


def test_long_run(short_train):
    short_train(make_model(), make_data(), loss_fn=loss_fn, optimizer=sgd, steps=10**7, name="long",
                eval_fn=training_started, eval_every=5)
"""

ATTEMPTS = 3
START_DEADLINE_S = 120.0  # imports and collection on a slow, shared machine
STOP_DEADLINE_S = 60.0  # the run stops at once; the rest is pytest writing its report


def _wait_for(path: Path, proc: subprocess.Popen[str], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"pytest ended before training started:\n{proc.communicate()[0]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"training did not start within {deadline_s} s:\n{proc.communicate()[0]}")
        time.sleep(0.05)


@pytest.mark.slow
def test_the_first_ctrl_c_always_stops_short_train(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=LONG_RUN)
    for attempt in range(ATTEMPTS):
        started = pytester.path / f"started-{attempt}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--modelviz", "--modelviz-device=cpu",
             f"--modelviz-dir=runs-{attempt}", "test_user.py"],
            cwd=pytester.path, env={**os.environ, "TRAINING_STARTED": str(started)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        _wait_for(started, proc, START_DEADLINE_S)
        proc.send_signal(signal.SIGINT)
        try:
            output = proc.communicate(timeout=STOP_DEADLINE_S)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            output = proc.communicate()[0]
            pytest.fail(f"attempt {attempt}: one Ctrl-C did not stop short_train within {STOP_DEADLINE_S} s:\n{output}")
        assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
        banner = r"^!+ KeyboardInterrupt(: short_train interrupted at step \d+)? !+$"
        assert re.search(banner, output, re.MULTILINE), output
        # What ran before the Ctrl-C is kept, and the record says why it stopped.
        train = train_record(folder_of(run_dir_of(pytester, f"runs-{attempt}"), "test_long_run"))
        assert train["steps"] >= 5 and len(train["losses"]) == train["steps"]
        assert train["error"].startswith("KeyboardInterrupt"), train["error"]
