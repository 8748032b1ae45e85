"""Atomic file and folder writes: a crash never leaves a half-written output.

Outputs get the modes a plain open()/mkdir gives under the user's umask
(tempfile's mkstemp/mkdtemp would make them private to their owner).
"""
import contextlib
import json
import os
import secrets
import shutil

from dgam_tf.errors import UserError


@contextlib.contextmanager
def atomic_output_dir(path, overwrite=False):
    """Yields a temporary folder that becomes `path` only if the block succeeds.

    Args:
      path: the final folder.
      overwrite: replace an existing `path`; otherwise an existing one is an
        error and is left untouched.

    Raises:
      UserError: `path` exists and `overwrite` is false, or its parent cannot
        be written.
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and not overwrite:
        raise UserError(f"{path} already exists; refusing to overwrite it")
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp, _ = _create_temporary(path, os.mkdir)
    except OSError as e:
        raise UserError(f"cannot write to {parent}: {e.strerror}") from None
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if overwrite and os.path.exists(path):
        old = tmp + ".old"
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        # rename() refuses a non-empty target, so a folder that appeared
        # meanwhile (e.g. a concurrent export's version) is never replaced.
        os.rename(tmp, path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"{path} appeared while it was being written; "
                        "refusing to overwrite it") from None


def _create_temporary(path, create):
    """Calls `create(name)` on a new hidden name beside `path`; returns
    (name, what `create` returned).

    `create` makes the file or folder exclusively (FileExistsError if taken)
    with the default modes, so the umask applies as to any new output.
    """
    parent, base = os.path.split(os.path.abspath(path))
    while True:
        name = os.path.join(parent, f".{base}.tmp-{secrets.token_hex(4)}")
        with contextlib.suppress(FileExistsError):
            return name, create(name)


def atomic_write_bytes(path, data):
    """Writes `data` to `path` through a temporary file and a rename."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        tmp, fd = _create_temporary(
            path, lambda name: os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def atomic_write_json(path, obj):
    """Writes `obj` as indented JSON to `path` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path, what="JSON file"):
    """Reads a JSON file, turning a missing or malformed file into a UserError."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{what} {path} is not valid JSON: {e}") from None
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror}") from None
