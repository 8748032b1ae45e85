"""Reads and atomic writes, on any filesystem TensorFlow knows.

Local paths use the OS: a rename publishes a file or folder atomically,
outputs get the modes a plain open()/mkdir gives under the user's umask
(tempfile's mkstemp/mkdtemp would make them private to their owner). Paths with a scheme (gs://, s3://, hdfs://, ram://)
go through tf.io.gfile, imported only then (eval_detections runs without
TensorFlow); there a folder has no atomic rename, so a folder is written
aside and published file by file, the files readers go by last
(COMMIT_FILES). docs/cloud.md says what is atomic where.
"""
import contextlib
import errno
import fnmatch
import json
import os
import secrets
import shutil

from dgam_tf.errors import UserError

# Files by which readers know a folder is complete: a checkpoint's index (TF
# reads it first), best.json, dataset.json, and TF Serving's saved_model.pb.
# On a filesystem without folder rename they are published last, in this
# order, and an overwritten folder's are withdrawn first, so a reader sees
# the new folder whole or not at all.
COMMIT_FILES = ("*.index", "best.json", "dataset.json", "saved_model.pb")


def is_remote(path):
    """True for a path with a scheme (gs://..., ram://...): tf.io.gfile's."""
    return "://" in str(path)


def abspath(path):
    """An absolute local path; a remote one as it is."""
    return path if is_remote(path) else os.path.abspath(path)


def _gfile():
    import tensorflow as tf  # Only for remote paths: see the module docstring.
    return tf.io.gfile


@contextlib.contextmanager
def _os_errors():
    """Turns tf.io.gfile's errors into the OSError open() would raise."""
    import tensorflow as tf
    try:
        yield
    except tf.errors.NotFoundError as e:
        raise FileNotFoundError(errno.ENOENT, e.message or os.strerror(errno.ENOENT)) from None
    except tf.errors.OpError as e:
        raise OSError(errno.EIO, e.message or type(e).__name__) from None


def exists(path):
    """Whether `path` exists; UserError if its filesystem cannot tell (an
    unknown scheme, an unreachable bucket)."""
    if not is_remote(path):
        return os.path.exists(path)
    with _readable(path):
        return _gfile().exists(path)


@contextlib.contextmanager
def _readable(path):
    """A remote filesystem's error on `path` as one UserError line."""
    try:
        with _os_errors():
            yield
    except OSError as e:
        raise UserError(f"cannot read {path}: {(e.strerror or '').splitlines()[0]}") from None


def require_dir(path, missing="missing folder"):
    """UserError "{missing}: {path}" unless `path` is a folder, or one line on
    why it cannot be read (e.g. a scheme TensorFlow does not know)."""
    if not is_remote(path):
        found = os.path.isdir(path)
    else:
        with _readable(path):   # exists() raises on an unknown scheme, isdir() not
            found = _gfile().exists(path) and _gfile().isdir(path)
    if not found:
        raise UserError(f"{missing}: {path}")


# Schemes that tensorflow-io's filesystem plugins provide (TensorFlow itself
# has file://, gs:// and ram://).
TENSORFLOW_IO_SCHEMES = ("s3", "hdfs", "viewfs", "har", "az")


def check_scheme(path, flag):
    """UserError naming `--flag` unless TensorFlow has a filesystem for
    `path`'s scheme. For a scheme of TENSORFLOW_IO_SCHEMES, tensorflow-io
    is imported first if it is installed (importing it registers them)."""
    if not is_remote(path):
        return
    import tensorflow as tf
    scheme = str(path).split("://", 1)[0]
    if scheme in tf.io.gfile.get_registered_schemes():
        return
    fix = "no package known to dgam-tf provides it"
    if scheme in TENSORFLOW_IO_SCHEMES:
        fix = _import_tensorflow_io(scheme)
        if scheme in tf.io.gfile.get_registered_schemes():
            return
    known = ", ".join(f"{s}://" for s in sorted(tf.io.gfile.get_registered_schemes()) if s)
    raise UserError(f"--{flag}={path}: TensorFlow {tf.__version__} has no {scheme}:// "
                    f"filesystem (only {known} and local paths); {fix} (docs/cloud.md)")


def _import_tensorflow_io(scheme):
    """Imports tensorflow-io; returns what to install for `scheme`:// if it
    is still missing."""
    need = f"{scheme}:// needs tensorflow-io in a release built for this TensorFlow"
    try:
        import tensorflow_io  # noqa: F401 (registers its filesystems)
    except ImportError:
        return f"{need}: pip install tensorflow-io"
    except Exception as e:  # a build for another TensorFlow fails to load its library
        return f"{need}; the installed one does not load: {str(e).splitlines()[0]}"
    return f"{need}; the installed one registered no {scheme}:// filesystem"


def remove(path):
    """Deletes a file (OSError as open() would raise it)."""
    if not is_remote(path):
        os.remove(path)
        return
    with _os_errors():
        _gfile().remove(path)


def read_bytes(path):
    """The contents of a file (OSError if it cannot be read)."""
    if not is_remote(path):
        with open(path, "rb") as f:
            return f.read()
    with _os_errors():
        with _gfile().GFile(path, "rb") as f:
            return f.read()


def read_json(path, what="JSON file"):
    """Reads a JSON file, turning a missing or malformed file into a UserError."""
    try:
        return json.loads(read_bytes(path))
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{what} {path} is not valid JSON: {e}") from None
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror}") from None


def _temporary_name(path):
    """A new hidden name beside `path`."""
    parent, base = os.path.split(path.rstrip("/"))
    return os.path.join(parent, f".{base}.tmp-{secrets.token_hex(4)}")


def _create_temporary(path, create):
    """Calls `create(name)` on a new hidden name beside local `path`; returns
    (name, what `create` returned).

    `create` makes the file or folder exclusively (FileExistsError if taken)
    with the default modes, so the umask applies as to any new output.
    """
    while True:
        name = _temporary_name(os.path.abspath(path))
        with contextlib.suppress(FileExistsError):
            return name, create(name)


def refuse_existing(path, overwrite=False):
    """UserError unless `path` is free or `overwrite` (call it before the work
    whose output goes there)."""
    if exists(path) and not overwrite:
        raise UserError(f"{abspath(path)} already exists; refusing to overwrite it (pass "
                        "--overwrite to replace it)")


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
    path = abspath(path)
    refuse_existing(path, overwrite)
    writer = _remote_output_dir if is_remote(path) else _local_output_dir
    with writer(path, overwrite) as tmp:
        yield tmp


def _appeared(path):
    return UserError(f"{path} appeared while it was being written; refusing to overwrite it")


@contextlib.contextmanager
def _local_output_dir(path, overwrite):
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
        raise _appeared(path) from None


@contextlib.contextmanager
def _remote_output_dir(path, overwrite):
    """atomic_output_dir where folders cannot be renamed: the block writes a
    hidden folder beside `path`, then `_publish` moves its files in."""
    gfile, tmp = _gfile(), _temporary_name(path)
    try:
        with _os_errors():
            gfile.makedirs(tmp)
    except OSError as e:
        raise UserError(f"cannot write to {os.path.dirname(path)}: {e.strerror}") from None
    try:
        yield tmp
        if not overwrite and gfile.exists(path):
            raise _appeared(path)
        try:
            with _os_errors():
                _publish(tmp, path)
        except OSError as e:
            raise UserError(f"cannot write {path}: {e.strerror}") from None
    finally:
        with contextlib.suppress(Exception):
            gfile.rmtree(tmp)


def _commit_rank(name):
    """Position of a file among COMMIT_FILES (None: not one)."""
    base = os.path.basename(name)
    return next((i for i, p in enumerate(COMMIT_FILES) if fnmatch.fnmatch(base, p)), None)


def tree(root, rel=""):
    """(folders, files) under remote `root`, relative to it."""
    gfile, folders, files = _gfile(), [], []
    for name in gfile.listdir(os.path.join(root, rel)):
        name = os.path.join(rel, name.rstrip("/"))
        if gfile.isdir(os.path.join(root, name)):
            below = tree(root, name)
            folders += [name] + below[0]
            files += below[1]
        elif gfile.exists(os.path.join(root, name)):  # ram:// lists "b.x" in "b" as ".x"
            files.append(name)
    return folders, files


def _publish(tmp, path):
    """Moves the files of folder `tmp` into folder `path` (remote), replacing
    it: the old commit files are withdrawn first, the new ones come last."""
    gfile = _gfile()
    folders, files = tree(tmp)
    old = tree(path)[1] if gfile.isdir(path) else []
    for name in old:
        if _commit_rank(name) is not None:
            gfile.remove(os.path.join(path, name))
    for folder in [""] + folders:
        gfile.makedirs(os.path.join(path, folder))
    last = sorted((f for f in files if _commit_rank(f) is not None), key=_commit_rank)
    for name in [f for f in files if f not in last]:
        gfile.rename(os.path.join(tmp, name), os.path.join(path, name), overwrite=True)
    for name in set(old) - set(files):
        if _commit_rank(name) is None:
            gfile.remove(os.path.join(path, name))
    for name in last:
        gfile.rename(os.path.join(tmp, name), os.path.join(path, name), overwrite=True)


def atomic_write_bytes(path, data):
    """Writes `data` to `path` through a temporary file and a rename (a
    server-side copy on object stores, whose new object appears whole)."""
    atomic_write_files({path: data})


def atomic_write_files(contents):
    """Writes {path: bytes}, each file whole, as a set: every file is first
    written to a hidden temporary beside its path, and all are renamed into
    place only once all are written, so a failure while writing (a path that
    is a folder, a full disk, Ctrl-C) leaves none of them new."""
    staged = []
    try:
        for path, data in contents.items():
            check_output_file(path)
            staged.append((_stage(path, data), path))
        for tmp, path in staged:
            if is_remote(path):
                with _os_errors():
                    _gfile().rename(tmp, path, overwrite=True)
            else:
                os.replace(tmp, path)
    except BaseException as e:
        for tmp, path in staged:
            with contextlib.suppress(Exception):
                remove(tmp)
        if isinstance(e, OSError):
            raise UserError(f"cannot write {path}: {e.strerror}") from None
        raise


def check_output_file(path):
    """UserError unless `path` can become a file: it is no folder, and (for
    a local path) its nearest existing parent is a writable folder. Call it
    before the work whose result goes there."""
    if is_remote(path):
        with _os_errors():
            if _gfile().isdir(path):
                raise UserError(f"cannot write {path}: it is a folder")
        return
    if os.path.isdir(path):
        raise UserError(f"cannot write {path}: it is a folder")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: {parent} is not writable")


def _stage(path, data):
    """Writes `data` to a new hidden file beside `path`; returns its name."""
    if is_remote(path):
        tmp = _temporary_name(path)
        with _os_errors():
            _gfile().makedirs(os.path.dirname(path))
        opened = _gfile().GFile(tmp, "wb")
    else:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp, fd = _create_temporary(
            path, lambda name: os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        opened = os.fdopen(fd, "wb")
    try:
        with _os_errors() if is_remote(path) else contextlib.nullcontext(), opened as f:
            f.write(data)
            f.flush()
            if not is_remote(path):
                os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(Exception):
            remove(tmp)
        raise
    return tmp


def atomic_write_json(path, obj):
    """Writes `obj` as indented JSON to `path` atomically."""
    atomic_write_bytes(path, json_bytes(obj))


def json_bytes(obj):
    """`obj` as indented JSON, as atomic_write_json writes it."""
    return (json.dumps(obj, indent=2) + "\n").encode()
