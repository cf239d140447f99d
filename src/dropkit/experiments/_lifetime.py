"""Worker processes that end with the process that started them, even when it is SIGKILLed.

A SIGKILLed parent runs no cleanup, so its ``multiprocessing`` workers would live on,
reparented to PID 1 (and with them the resource tracker, which waits for every holder of its
pipe). Each worker calls :func:`die_with_parent` first: on Linux the kernel sends it SIGKILL
when the parent dies (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread checks the parent
PID every :data:`POLL_S` seconds and exits if it changed (the fallback, and the guard against a
parent that died before ``prctl`` ran).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading

__all__ = ["POLL_S", "die_with_parent"]

#: How often the fallback watchdog checks the parent PID.
POLL_S = 0.5
_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no libc or no prctl: the watchdog still runs
        pass


def _watch(parent_pid: int) -> None:
    stopped = threading.Event()
    while not stopped.wait(POLL_S):
        if os.getppid() != parent_pid:
            os._exit(1)


def die_with_parent(parent_pid: int) -> None:
    """End this process (exit status 1, or SIGKILL) as soon as ``parent_pid`` is gone.

    ``parent_pid`` is the starting process's ``os.getpid()``, passed to the worker; comparing
    with it (rather than with 1) also works under a subreaper.
    """
    _set_parent_death_signal()
    if os.getppid() != parent_pid:  # died before prctl: no signal will come
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), name="die-with-parent", daemon=True).start()
