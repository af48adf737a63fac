"""Ctrl-C always stops training.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be when SIGINT arrives.
Inside a weakref callback or a ``__del__`` (garbage collection runs them between any two lines) the
interpreter cannot propagate it: it prints "Exception ignored in ..." and carries on, and a long
run would go on as if nothing was pressed. While training runs, the SIGINT handler notes each
interrupt before raising it as usual, and the loop raises it again at the next step (or when
training ends) if it got lost on the way.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

StepCheck = Callable[[int], None]


@contextlib.contextmanager
def interrupts_kept() -> Iterator[StepCheck]:
    """Yields ``check(step)``, which raises ``KeyboardInterrupt`` if a Ctrl-C was swallowed.

    The handler wraps whatever handler is installed (Python's default raises
    ``KeyboardInterrupt``), so a handler of the caller's keeps working; where none can be
    installed (not the main thread, SIGINT ignored or left to the OS) nothing changes.
    """
    pressed: list[int] = []

    def check(step: int) -> None:
        if pressed:
            raise KeyboardInterrupt(f"short_train interrupted at step {step}")

    previous = _python_handler()
    if previous is None:
        yield check
        return

    def handler(signum: int, frame: Any) -> None:
        try:
            previous(signum, frame)
        except KeyboardInterrupt:
            pressed.append(signum)  # noted first: the raise below may land where it is lost
            raise

    signal.signal(signal.SIGINT, handler)
    try:
        yield check
    finally:
        if signal.getsignal(signal.SIGINT) is handler:  # the body may have installed its own
            signal.signal(signal.SIGINT, previous)


def _python_handler() -> Callable[[int, Any], Any] | None:
    if threading.current_thread() is not threading.main_thread():
        return None  # only the main thread may set handlers, and only it receives signals
    current = signal.getsignal(signal.SIGINT)
    return current if callable(current) else None
