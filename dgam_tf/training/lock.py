"""The model-dir lock: one training run per --model_dir, on any filesystem
TensorFlow knows (an flock locally, a lock object with a heartbeat on remote
filesystems; docs/cloud.md)."""
import contextlib
import fcntl
import json
import os
import secrets
import socket
import sys
import threading
import time

from dgam_tf import files
from dgam_tf.errors import UserError
from dgam_tf.training.distribute import is_chief_task

LOCK_FILE = ".lock"
# The lock object of a remote model dir: rewritten every HEARTBEAT_SECONDS;
# a later run takes it over after STALE_SECONDS without a heartbeat. A run
# holds it once its own write is still there SETTLE_SECONDS later.
HEARTBEAT_SECONDS = 30
STALE_SECONDS = 300
SETTLE_SECONDS = 2.0


class ModelDirHeld(UserError):
    """Another run holds the model dir (--mode=study moves on to the next seed)."""


@contextlib.contextmanager
def model_dir_lock(model_dir, multi_worker=False):
    """Holds model_dir for one training run; another run is refused with one
    line naming the holder.

    Locally an flock, which the OS frees if we crash. On a remote filesystem
    a lock object, `<model_dir>/.lock`, holding owner, host, pid and a
    heartbeat: a run that died without removing it is taken over once its
    heartbeat is STALE_SECONDS old. With `multi_worker` only the chief locks
    (the other workers write nothing there).
    """
    if multi_worker and not is_chief_task():
        yield
        return
    if files.is_remote(model_dir):
        with _lock_object(model_dir):
            yield
        return
    try:
        os.makedirs(model_dir, exist_ok=True)
        f = open(os.path.join(model_dir, LOCK_FILE), "w")
    except OSError as e:
        raise UserError(f"cannot write to --model_dir {model_dir}: {e.strerror}") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ModelDirHeld(f"another training run holds {model_dir}; wait for it to "
                            "finish or use another --model_dir") from None
        yield


def is_held(model_dir):
    """Whether a run holds model_dir now: a hint to skip it (it may be
    freed or taken right after; model_dir_lock decides). Locally a
    momentary flock, remotely a lock object with a fresh heartbeat."""
    path = os.path.join(model_dir, LOCK_FILE)
    if files.is_remote(model_dir):
        held = _read_lock(path)
        return held is not None and _age(held) < STALE_SECONDS
    try:
        f = open(path)
    except OSError:
        return False
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def _read_lock(path):
    """The lock object's contents, or None if there is none (or unreadable)."""
    try:
        holder = json.loads(files.read_bytes(path))
        return holder if isinstance(holder, dict) and "owner" in holder else None
    except (OSError, ValueError):
        return None


def _age(lock):
    """Seconds since a lock object's last heartbeat."""
    return time.time() - float(lock.get("heartbeat", 0))


def _holder(lock):
    return (f"host {lock.get('host')} pid {lock.get('pid')}, last heartbeat "
            f"{_age(lock):.0f} s ago")


@contextlib.contextmanager
def _lock_object(model_dir):
    path = os.path.join(model_dir, LOCK_FILE)
    me = {"owner": secrets.token_hex(8), "host": socket.gethostname(), "pid": os.getpid()}
    held = _read_lock(path)
    if held is not None:
        if _age(held) < STALE_SECONDS:
            raise ModelDirHeld(f"another training run holds {model_dir} ({_holder(held)}; taken "
                            f"over after {STALE_SECONDS} s without one): wait for it to "
                            "finish or use another --model_dir")
        print(f"Taking over {model_dir} from a run that stopped ({_holder(held)})",
              file=sys.stderr, flush=True)
    files.atomic_write_json(path, dict(me, heartbeat=time.time()))
    time.sleep(SETTLE_SECONDS)   # A run that started at the same time wrote after us?
    held = _read_lock(path)
    if held is None or held["owner"] != me["owner"]:
        raise ModelDirHeld(f"another training run took {model_dir} at the same time"
                        + (f" ({_holder(held)})" if held else "") + "; use another --model_dir")
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, me, stop), daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        if (_read_lock(path) or {}).get("owner") == me["owner"]:
            with contextlib.suppress(OSError):
                files.remove(path)


def _heartbeat(path, me, stop):
    """Rewrites the lock object every HEARTBEAT_SECONDS until `stop`; warns
    once and stops if another run took it over."""
    while not stop.wait(HEARTBEAT_SECONDS):
        held = _read_lock(path)
        if held is not None and held["owner"] != me["owner"]:
            print(f"warning: {path} was taken over by {_holder(held)}; this run no "
                  "longer holds its model dir", file=sys.stderr, flush=True)
            return
        with contextlib.suppress(UserError):   # a network hiccup: try at the next beat
            files.atomic_write_json(path, dict(me, heartbeat=time.time()))
