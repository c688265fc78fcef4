"""The write sandbox of the probed script: it may read anything, and nothing
outside a scratch area is created, changed, renamed or deleted.

Two layers, both installed in the child before the script runs:

- **Kernel** (``restrict_writes``): a Landlock ruleset (Linux >= 5.13,
  unprivileged) that denies every write outside the scratch area and
  ``/dev``. It covers native code (safetensors, h5py, CUDA libraries),
  subprocesses and every thread, because the child restricts itself before
  it imports torch or starts anything. Reads and execution are not handled
  by the ruleset, so they stay allowed everywhere.
- **Python** (``Overlay``): a copy-on-write view so that scripts keep
  working. Writes through the common Python file APIs (``open``, ``os.*``,
  ``shutil.rmtree``, ``pathlib``, ``tempfile`` and, through the recorder,
  ``torch.save``) go to a shadow copy of the path inside the scratch area;
  deletions and renames of the user's files only hide them from the
  script. Reads see the shadow first. An audit hook blocks (and reports) any
  Python-level write that escaped the redirection.

What the script attempted is recorded as ``events`` (operation, path,
result, script line). This module does not import torch.
"""

import ctypes
import errno
import os
import shutil
import stat
import sys
import threading
from typing import Callable, Dict, List, Optional, Tuple

# -- Landlock ---------------------------------------------------------------------

# Same numbers on every architecture for syscalls added after 5.1.
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Write-side filesystem rights (uapi/linux/landlock.h). Read, read_dir,
# execute and ioctl_dev are deliberately not handled: they stay allowed.
_FS_WRITE_V1 = (
    (1 << 1)  # WRITE_FILE
    | (1 << 4)  # REMOVE_DIR
    | (1 << 5)  # REMOVE_FILE
    | (1 << 6)  # MAKE_CHAR
    | (1 << 7)  # MAKE_DIR
    | (1 << 8)  # MAKE_REG
    | (1 << 9)  # MAKE_SOCK
    | (1 << 10)  # MAKE_FIFO
    | (1 << 11)  # MAKE_BLOCK
    | (1 << 12)  # MAKE_SYM
)
_FS_REFER = 1 << 13  # ABI 2: rename/link across directories
_FS_TRUNCATE = 1 << 14  # ABI 3


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def landlock_abi() -> Tuple[int, str]:
    """(ABI version, "") when this kernel can restrict writes, else (0, why)."""
    if not sys.platform.startswith("linux"):
        return 0, "Landlock is a Linux feature (this is %s)" % sys.platform
    try:
        libc = _libc()
        version = libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                               ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (OSError, AttributeError) as exc:
        return 0, "cannot call the kernel: %s" % exc
    if version < 1:
        code = ctypes.get_errno()
        why = {errno.ENOSYS: "this kernel has no Landlock (Linux >= 5.13 built with CONFIG_SECURITY_LANDLOCK)",
               errno.EOPNOTSUPP: "Landlock is built in but disabled (add landlock to the lsm= boot parameter)"}
        return 0, why.get(code, "landlock_create_ruleset failed: %s" % os.strerror(code))
    return int(version), ""


def restrict_writes(writable: List[str]) -> int:
    """Deny this process, its future threads and children any filesystem
    write outside ``writable`` (directories). Returns the Landlock ABI used;
    raises OSError when the kernel refuses."""
    abi, why = landlock_abi()
    if not abi:
        raise OSError(errno.ENOSYS, why)
    handled = _FS_WRITE_V1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    libc = _libc()
    attr = _RulesetAttr(handled)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        code = ctypes.get_errno()
        raise OSError(code, "landlock_create_ruleset: %s" % os.strerror(code))
    try:
        for path in writable:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneathAttr(handled, fd)
                if libc.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                                ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, "landlock_add_rule %s: %s" % (path, os.strerror(code)))
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, "prctl(PR_SET_NO_NEW_PRIVS): %s" % os.strerror(code))
        if libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            code = ctypes.get_errno()
            raise OSError(code, "landlock_restrict_self: %s" % os.strerror(code))
    finally:
        os.close(ruleset)
    return abi


# -- the Python-level copy-on-write view ---------------------------------------------

MAX_EVENTS = 200
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _err(code: int, path) -> OSError:
    """The error the operating system would have raised."""
    return OSError(code, os.strerror(code), path)


def _own_logic(method):
    """Marks an exception that the overlay's own path logic raises (other
    than the operating system's errors it reproduces) as a probe bug."""
    import functools

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except OSError:
            raise
        except Exception as exc:
            exc.lintorch_internal = True
            raise

    return wrapper


class _Entry:
    """What ``os.scandir`` yields, for a merged directory listing."""

    __slots__ = ("name", "path", "_physical")

    def __init__(self, name, path, physical: str):
        self.name, self.path, self._physical = name, path, physical

    def __fspath__(self):
        return self.path

    def __repr__(self):
        return "<DirEntry %r>" % (self.name,)

    def stat(self, *, follow_symlinks=True):
        return (_ORIG["stat"] if follow_symlinks else _ORIG["lstat"])(self._physical)

    def _mode(self, follow_symlinks=True):
        try:
            return self.stat(follow_symlinks=follow_symlinks).st_mode
        except OSError:
            return 0

    def is_dir(self, *, follow_symlinks=True):
        return stat.S_ISDIR(self._mode(follow_symlinks))

    def is_file(self, *, follow_symlinks=True):
        return stat.S_ISREG(self._mode(follow_symlinks))

    def is_symlink(self):
        return stat.S_ISLNK(self._mode(False))

    def is_junction(self):
        return False

    def inode(self):
        return self.stat(follow_symlinks=False).st_ino


class _Scandir:
    def __init__(self, entries):
        self._it = iter(entries)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._it = iter(())


_ORIG: Dict[str, Callable] = {}


class Overlay:
    """Redirects the script's Python-level writes into ``shadow_root``.

    A user path ``/a/b`` is shadowed by ``shadow_root + /a/b``. ``hidden``
    holds the user paths the script deleted, renamed away or replaced: they
    and everything under them are invisible to the script unless it created
    them again in the shadow (an overlay file system's whiteouts and opaque
    directories)."""

    def __init__(self, shadow_root: str, direct: List[str], locate: Callable[[], Optional[str]]):
        self.shadow_root = os.path.abspath(shadow_root)
        # written in place: the scratch area (shadow, private tmp) and /dev
        self.direct = tuple(os.path.abspath(p) for p in direct)
        self.locate = locate  # -> "line N" / "file.py:N" of the script's frame
        self.hidden = set()
        self.events: List[dict] = []
        self.event_count = 0
        self._keys: Dict[tuple, dict] = {}
        self._lock = threading.RLock()
        self._local = threading.local()

    # -- paths ---------------------------------------------------------------------

    @_own_logic
    def virtual(self, path) -> str:
        """The absolute path that ``path`` names. Shadow paths stay as they
        are (they are written in place), so the probe's own operations on
        them pass through the patched functions unchanged."""
        name = os.fsdecode(os.fspath(path))
        if not name.startswith("/"):
            name = os.path.join(_ORIG["getcwd"](), name)
        name = os.path.normpath(name)
        if name.startswith("//"):
            name = "/" + name.lstrip("/")
        return name

    def unshadow(self, physical: str) -> str:
        """The user path a shadow path stands for (for getcwd and display)."""
        root = self.shadow_root
        if physical == root:
            return "/"
        if physical.startswith(root + "/"):
            return physical[len(root):]
        return physical

    def managed(self, virtual: str) -> bool:
        return not any(virtual == d or virtual.startswith(d + "/") for d in self.direct)

    def shadow(self, virtual: str) -> str:
        return self.shadow_root + virtual if virtual != "/" else self.shadow_root

    def is_hidden(self, virtual: str) -> bool:
        if not self.hidden:
            return False
        path = virtual
        while True:
            if path in self.hidden:
                return True
            parent = os.path.dirname(path)
            if parent == path:
                return False
            path = parent

    def _lexists(self, physical: str) -> bool:
        try:
            _ORIG["lstat"](physical)
            return True
        except OSError:
            return False

    def real_visible(self, virtual: str) -> bool:
        return not self.is_hidden(virtual) and self._lexists(virtual)

    @_own_logic
    def physical(self, virtual: str) -> Optional[str]:
        """Where the script's view of ``virtual`` lives, or None if absent."""
        shadow = self.shadow(virtual)
        if self._lexists(shadow):
            return shadow
        if self.real_visible(virtual):
            return virtual
        return None

    @_own_logic
    def for_read(self, virtual: str) -> str:
        found = self.physical(virtual)
        if found is None:
            if self.is_hidden(virtual):  # must not fall through to the user's file
                raise _err(errno.ENOENT, virtual)
            return virtual  # absent: the original call raises its own error
        return found

    @staticmethod
    def _real_isdir(physical: str) -> bool:
        try:
            return stat.S_ISDIR(_ORIG["stat"](physical).st_mode)
        except OSError:
            return False

    def _stat(self, virtual: str, follow=True):
        found = self.physical(virtual)
        if found is None:
            raise _err(errno.ENOENT, virtual)
        return (_ORIG["stat"] if follow else _ORIG["lstat"])(found)

    def is_dir(self, virtual: str) -> bool:
        try:
            return stat.S_ISDIR(self._stat(virtual).st_mode)
        except OSError:
            return False

    def _ensure_shadow_dirs(self, virtual_dir: str) -> None:
        shadow = self.shadow(virtual_dir)
        if not self._real_isdir(shadow):
            _ORIG["makedirs"](shadow, exist_ok=True)

    @_own_logic
    def copy_up(self, virtual: str) -> str:
        """The shadow path of ``virtual``, holding a copy of the user's file
        (or an empty directory) when the shadow did not exist yet."""
        shadow = self.shadow(virtual)
        if self._lexists(shadow) or not self.real_visible(virtual):
            return shadow
        self._ensure_shadow_dirs(os.path.dirname(virtual))
        mode = _ORIG["lstat"](virtual).st_mode
        if stat.S_ISDIR(mode):
            _ORIG["mkdir"](shadow, stat.S_IMODE(mode) | 0o700)
        elif stat.S_ISLNK(mode):
            _ORIG["symlink"](os.readlink(virtual), shadow)
        else:
            _ORIG["copyfile"](virtual, shadow)
            _ORIG["chmod"](shadow, stat.S_IMODE(mode) | 0o600)
        return shadow

    @_own_logic
    def for_write(self, virtual: str, keep_content: bool) -> str:
        """The shadow path a write to ``virtual`` goes to; the parent must
        exist in the script's view, as it must for a real write."""
        parent = os.path.dirname(virtual)
        if not self.is_dir(parent):
            raise _err(errno.ENOENT if self.physical(parent) is None else errno.ENOTDIR, virtual)
        if keep_content:
            return self.copy_up(virtual)
        self._ensure_shadow_dirs(parent)
        shadow = self.shadow(virtual)
        if not self._lexists(shadow) and self.real_visible(virtual):
            self.hidden.add(virtual)  # replaced: the shadow is all the script sees from now on
        return shadow

    @_own_logic
    def listing(self, virtual: str) -> Dict[str, str]:
        """Merged directory listing: name -> physical path."""
        names: Dict[str, str] = {}
        found = False
        if self.real_visible(virtual) and self._real_isdir(virtual):
            found = True
            for name in _ORIG["listdir"](virtual):
                child = os.path.join(virtual, name)
                if child not in self.hidden:
                    names[name] = child
        shadow = self.shadow(virtual)
        if self._real_isdir(shadow):
            found = True
            for name in _ORIG["listdir"](shadow):
                names[name] = os.path.join(shadow, name)
        if not found:
            raise _err(errno.ENOTDIR if self.physical(virtual) else errno.ENOENT, virtual)
        return names

    @_own_logic
    def remove(self, virtual: str, directory: bool) -> None:
        """Delete ``virtual`` from the script's view; the user's copy stays."""
        found = self.physical(virtual)
        if found is None:
            raise _err(errno.ENOENT, virtual)
        is_dir = stat.S_ISDIR(_ORIG["lstat"](found).st_mode)
        if directory and not is_dir:
            raise _err(errno.ENOTDIR, virtual)
        if not directory and is_dir:
            raise _err(errno.EISDIR, virtual)
        if directory and self.listing(virtual):
            raise _err(errno.ENOTEMPTY, virtual)
        shadow = self.shadow(virtual)
        if self._lexists(shadow):
            (_ORIG["rmdir"] if directory else _ORIG["unlink"])(shadow)
        if self._lexists(virtual):
            self.hidden.add(virtual)

    @_own_logic
    def remove_tree(self, virtual: str) -> None:
        shadow = self.shadow(virtual)
        if self._lexists(shadow):
            _ORIG["rmtree"](shadow, ignore_errors=True)
        if self._lexists(virtual):
            self.hidden.add(virtual)

    @_own_logic
    def move(self, src: str, dst: str, overwrite_dir: bool = True) -> Tuple[str, str]:
        """Physical (source, destination) for a rename of user paths; the
        user's own source is copied, never moved."""
        found = self.physical(src)
        if found is None:
            raise _err(errno.ENOENT, src)
        src_is_dir = stat.S_ISDIR(_ORIG["lstat"](found).st_mode)
        if self.physical(dst) is not None and self.is_dir(dst):
            if not src_is_dir:
                raise _err(errno.EISDIR, dst)
            if self.listing(dst):
                raise _err(errno.ENOTEMPTY, dst)
        shadow_dst = self.for_write(dst, keep_content=False) if self.managed(dst) else dst
        if self.managed(dst) and self._real_isdir(shadow_dst) and not src_is_dir:
            raise _err(errno.EISDIR, dst)
        if self.managed(dst) and self._lexists(dst):
            self.hidden.add(dst)
        if found == src and self.managed(src):  # the user's own file or tree: copy it
            if src_is_dir:
                _ORIG["copytree"](src, shadow_dst, symlinks=True, dirs_exist_ok=True)
            else:
                _ORIG["copy2"](src, shadow_dst, follow_symlinks=False)
            self.hidden.add(src)
            return "", shadow_dst
        if self.managed(src) and self._lexists(src):
            self.hidden.add(src)
        return found, shadow_dst

    # -- the record -------------------------------------------------------------------

    def display(self, virtual: str) -> str:
        cwd = self.unshadow(_ORIG["getcwd"]())
        if virtual.startswith(cwd.rstrip("/") + "/"):
            return os.path.relpath(virtual, cwd)
        return virtual

    def record(self, op: str, path, result: str, via: str, to: Optional[str] = None) -> None:
        if getattr(self._local, "quiet", False):
            return
        where = self.locate()
        with self._lock:
            self.event_count += 1
            key = (op, path, result, via, where)
            event = self._keys.get(key)
            if event is not None:
                event["count"] += 1
                return
            if len(self.events) >= MAX_EVENTS:
                return
            event = {"op": op, "path": self.display(path) if isinstance(path, str) else path,
                     "result": result, "via": via, "where": where, "count": 1}
            if to:
                event["to"] = self.display(to)
            self._keys[key] = event
            self.events.append(event)

    def quiet(self):
        """Context in which operations are not recorded (the probe's own)."""
        overlay = self

        class _Quiet:
            def __enter__(self):
                self.before = getattr(overlay._local, "quiet", False)
                overlay._local.quiet = True

            def __exit__(self, *exc):
                overlay._local.quiet = self.before

        return _Quiet()


def _is_fd(path) -> bool:
    return isinstance(path, int)


def _flags_write(flags: int) -> bool:
    return bool(flags & _WRITE_FLAGS)


def _mode_write(mode) -> bool:
    return any(c in str(mode) for c in "wax+")


def install(overlay: Overlay) -> None:
    """Patch the Python file APIs so that writes of user paths go through
    ``overlay`` (copy-on-write), and add the audit hook that blocks the
    Python-level writes that still name a user path."""
    import builtins
    import io

    orig_open = io.open
    _ORIG.update(
        stat=os.stat, lstat=os.lstat, listdir=os.listdir, scandir=os.scandir, mkdir=os.mkdir, rmdir=os.rmdir,
        unlink=os.unlink, remove=os.remove, rename=os.rename, replace=os.replace, os_open=os.open,
        chmod=os.chmod, utime=os.utime, truncate=os.truncate, symlink=os.symlink, link=os.link,
        chdir=os.chdir, getcwd=os.getcwd, access=os.access, rmtree=shutil.rmtree, open=orig_open,
        makedirs=os.makedirs, copyfile=shutil.copyfile, copy2=shutil.copy2,
        copytree=shutil.copytree,
    )
    if hasattr(os, "chown"):
        _ORIG["chown"] = os.chown
    ov = overlay

    def managed(path) -> Optional[str]:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return None  # a descriptor, or a wrong type the original reports itself
        virtual = ov.virtual(path)
        return virtual if ov.managed(virtual) else None

    # Each wrapper calls the original with a physical path; the originals'
    # own internal calls (makedirs -> mkdir ...) go through the wrappers with
    # physical shadow paths, which are written in place.
    def _with_quiet(fn, *args, **kwargs):
        with ov.quiet():
            return fn(*args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        virtual = managed(file)
        if virtual is None:
            return orig_open(file, mode, *args, **kwargs)
        if not _mode_write(mode):
            return orig_open(ov.for_read(virtual), mode, *args, **kwargs)
        with ov._lock:
            if "x" in mode and ov.physical(virtual) is not None:
                raise _err(errno.EEXIST, file)
            existed = ov.physical(virtual) is not None
            keep = "a" in mode or ("+" in mode and "w" not in mode)
            target = _with_quiet(ov.for_write, virtual, keep)
        ov.record("append" if "a" in mode else ("write" if not existed or "w" in mode else "update"),
                  virtual, "redirected", "open(%r)" % mode, target)
        return orig_open(target, mode, *args, **kwargs)

    def os_open(path, flags, mode=0o777, *, dir_fd=None):
        virtual = managed(path) if dir_fd is None else None
        if virtual is None:
            return _ORIG["os_open"](path, flags, mode, dir_fd=dir_fd)
        if not _flags_write(flags):
            return _ORIG["os_open"](ov.for_read(virtual), flags, mode)
        with ov._lock:
            exists = ov.physical(virtual) is not None
            if exists and flags & os.O_CREAT and flags & os.O_EXCL:
                raise _err(errno.EEXIST, path)
            if not exists and not flags & os.O_CREAT:
                raise _err(errno.ENOENT, path)
            target = _with_quiet(ov.for_write, virtual, not flags & os.O_TRUNC)
        ov.record("write" if not exists or flags & os.O_TRUNC else "update", virtual, "redirected",
                  "os.open", target)
        return _ORIG["os_open"](target, flags, mode)

    def _stat_fn(name, follow_default):
        original = _ORIG[name]

        def wrapper(path, *, dir_fd=None, follow_symlinks=follow_default):
            virtual = managed(path) if dir_fd is None else None
            if virtual is None:
                if name == "lstat":
                    return original(path, dir_fd=dir_fd)
                return original(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
            return ov._stat(virtual, follow=follow_symlinks if name == "stat" else False)

        return wrapper

    def access(path, mode, *, dir_fd=None, effective_ids=False, follow_symlinks=True):
        virtual = managed(path) if dir_fd is None else None
        if virtual is None:
            return _ORIG["access"](path, mode, dir_fd=dir_fd, effective_ids=effective_ids,
                                   follow_symlinks=follow_symlinks)
        found = ov.physical(virtual)
        if found is None:
            return False
        if found == virtual and mode & os.W_OK:
            # a user file: writable in the script's view (the write is redirected)
            mode = (mode & ~os.W_OK) or os.F_OK
        return _ORIG["access"](found, mode, effective_ids=effective_ids, follow_symlinks=follow_symlinks)

    def _names(path, listing):
        if isinstance(path, bytes):
            return {os.fsencode(k): v for k, v in listing.items()}
        return listing

    def listdir(path="."):
        virtual = managed(path)
        if virtual is None:
            return _ORIG["listdir"](path)
        return list(_names(path, ov.listing(virtual)))

    def scandir(path="."):
        virtual = managed(path)
        if virtual is None:
            return _ORIG["scandir"](path)
        shown = os.fspath(path)
        entries = [_Entry(name, os.path.join(shown, name), physical)
                   for name, physical in _names(shown, ov.listing(virtual)).items()]
        return _Scandir(entries)

    def mkdir(path, mode=0o777, *, dir_fd=None):
        virtual = managed(path) if dir_fd is None else None
        if virtual is None:
            return _ORIG["mkdir"](path, mode, dir_fd=dir_fd)
        with ov._lock:
            if ov.physical(virtual) is not None:
                raise _err(errno.EEXIST, path)
            target = _with_quiet(ov.for_write, virtual, False)
            _ORIG["mkdir"](target, mode)
        ov.record("mkdir", virtual, "redirected", "os.mkdir", target)

    def _remover(name, directory):
        original = _ORIG[name]

        def wrapper(path, *, dir_fd=None):
            virtual = managed(path) if dir_fd is None else None
            if virtual is None:
                return original(path, dir_fd=dir_fd)
            with ov._lock:
                user_copy = ov.real_visible(virtual)
                ov.remove(virtual, directory)
            ov.record("delete", virtual, "hidden (your copy kept)" if user_copy else "redirected", "os." + name)

        return wrapper

    def rmtree(path, *args, **kwargs):
        virtual = managed(path) if kwargs.get("dir_fd") is None else None
        if virtual is None:
            return _ORIG["rmtree"](path, *args, **kwargs)
        ignore_errors = kwargs.get("ignore_errors", args[0] if args else False)
        onerror = kwargs.get("onerror", args[1] if len(args) > 1 else None)
        onexc = kwargs.get("onexc")
        try:
            with ov._lock:
                found = ov.physical(virtual)
                if found is None:
                    raise _err(errno.ENOENT, path)
                mode = _ORIG["lstat"](found).st_mode
                if stat.S_ISLNK(mode):
                    raise OSError("Cannot call rmtree on a symbolic link")
                if not stat.S_ISDIR(mode):
                    raise _err(errno.ENOTDIR, path)
                user_copy = ov.real_visible(virtual)
                ov.remove_tree(virtual)
        except OSError as exc:
            if ignore_errors:
                return
            if onexc is not None:
                return onexc(os.rmdir, path, exc)
            if onerror is not None:
                return onerror(os.rmdir, path, sys.exc_info())
            raise
        ov.record("delete tree", virtual, "hidden (your copy kept)" if user_copy else "redirected",
                  "shutil.rmtree")

    def _mover(name):
        original = _ORIG[name]

        def wrapper(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
            if src_dir_fd is not None or dst_dir_fd is not None or not all(
                    isinstance(p, (str, bytes, os.PathLike)) for p in (src, dst)):
                return original(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
            vsrc, vdst = ov.virtual(src), ov.virtual(dst)
            if not ov.managed(vsrc) and not ov.managed(vdst):
                return original(src, dst)
            with ov._lock:
                user_copy = ov.managed(vsrc) and ov.real_visible(vsrc) and ov.physical(vsrc) == vsrc
                if not ov.managed(vsrc) and ov.managed(vdst):  # from the private tmp into the user's view
                    target = _with_quiet(ov.for_write, vdst, False)
                    if ov._lexists(vdst):
                        ov.hidden.add(vdst)
                    original(src, target)
                else:
                    source, target = _with_quiet(ov.move, vsrc, vdst)
                    if source:
                        original(source, target)
            if ov.managed(vdst):
                ov.record("rename", vdst, "redirected", "os.%s from %s" % (name, ov.display(vsrc)), target)
            if user_copy:
                ov.record("delete", vsrc, "hidden (your copy kept)", "os.%s" % name)

        return wrapper

    def _attr_changer(name):
        original = _ORIG[name]

        def wrapper(path, *args, **kwargs):
            virtual = managed(path) if kwargs.get("dir_fd") is None else None
            if virtual is None:
                return original(path, *args, **kwargs)
            follow = kwargs.pop("follow_symlinks", True)
            with ov._lock:
                if ov.physical(virtual) is None:
                    raise _err(errno.ENOENT, path)
                target = _with_quiet(ov.copy_up, virtual)
            ov.record("change " + name, virtual, "redirected", "os." + name, target)
            if follow is False and name != "truncate":
                kwargs["follow_symlinks"] = False
            return original(target, *args, **kwargs)

        return wrapper

    def symlink(src, dst, target_is_directory=False, *, dir_fd=None):
        virtual = managed(dst) if dir_fd is None else None
        if virtual is None:
            return _ORIG["symlink"](src, dst, target_is_directory, dir_fd=dir_fd)
        with ov._lock:
            if ov.physical(virtual) is not None:
                raise _err(errno.EEXIST, dst)
            target = _with_quiet(ov.for_write, virtual, False)
        ov.record("symlink", virtual, "redirected", "os.symlink", target)
        return _ORIG["symlink"](src, target, target_is_directory)

    def link(src, dst, *args, **kwargs):
        virtual = managed(dst) if not args and not kwargs else None
        if virtual is None:
            return _ORIG["link"](src, dst, *args, **kwargs)
        with ov._lock:
            if ov.physical(virtual) is not None:
                raise _err(errno.EEXIST, dst)
            target = _with_quiet(ov.for_write, virtual, False)
            source = ov.for_read(ov.virtual(src))
            try:
                _ORIG["link"](source, target)
            except OSError:  # across file systems: a copy has the same content
                _ORIG["copy2"](source, target)
        ov.record("link", virtual, "redirected", "os.link", target)

    def chdir(path):
        virtual = managed(path)
        if virtual is not None:
            found = ov.physical(virtual)
            if found is not None:
                path = found
        return _ORIG["chdir"](path)

    def getcwd():
        return ov.unshadow(_ORIG["getcwd"]())

    patches = {
        "stat": _stat_fn("stat", True), "lstat": _stat_fn("lstat", False), "access": access,
        "listdir": listdir, "scandir": scandir, "mkdir": mkdir, "open": os_open,
        "remove": _remover("remove", False), "unlink": _remover("unlink", False), "rmdir": _remover("rmdir", True),
        "rename": _mover("rename"), "replace": _mover("replace"),
        "chmod": _attr_changer("chmod"), "utime": _attr_changer("utime"), "truncate": _attr_changer("truncate"),
        "symlink": symlink, "link": link, "chdir": chdir, "getcwd": getcwd,
    }
    if "chown" in _ORIG:
        patches["chown"] = _attr_changer("chown")
    for name, fn in patches.items():
        fn.__name__ = name
        setattr(os, name, fn)
    shutil.rmtree = rmtree
    builtins.open = open_
    io.open = open_
    sys.addaudithook(_audit_hook(overlay))


_AUDITED_WRITES = {
    "os.remove": (0,), "os.rename": (0, 1), "os.rmdir": (0,), "os.mkdir": (0,), "os.truncate": (0,),
    "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,), "os.symlink": (1,), "os.link": (1,),
    "shutil.rmtree": (0,),
}
_PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn"}


def _audit_hook(overlay: Overlay):
    """The last Python-level line: a write that still names a user path (a
    library that kept its own reference to an unpatched function, a path
    relative to a directory descriptor) is blocked with a clear error, and
    every process start is recorded."""

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if path is None or _is_fd(path):
                return
            if not (_mode_write(mode) if mode is not None else _flags_write(flags or 0)):
                return
            paths = (path,)
        elif event in _AUDITED_WRITES:
            paths = [args[i] for i in _AUDITED_WRITES[event]]
            dir_fds = [a for a in args[len(_AUDITED_WRITES[event]):] if _is_fd(a) and a >= 0] if event in (
                "os.remove", "os.rename", "os.rmdir", "os.mkdir") else []
            if dir_fds:
                return  # relative to a directory the script opened: the kernel decides
        elif event in _PROCESS_EVENTS:
            command = args[1] if event == "subprocess.Popen" else args[0]
            if isinstance(command, (list, tuple)):
                command = " ".join(os.fsdecode(c) if isinstance(c, bytes) else str(c) for c in command)
            overlay.record("start process", str(command)[:120], "runs under the write restriction", event)
            return
        else:
            return
        for path in paths:
            if path is None or _is_fd(path):
                continue
            try:
                virtual = overlay.virtual(path)
            except (TypeError, ValueError):
                continue
            if overlay.managed(virtual):
                overlay.record(event.split(".")[-1], virtual, "blocked", event)
                raise PermissionError(errno.EACCES, "lintorch probe: a write outside the probe's scratch area was "
                                      "blocked (%s)" % event, os.fsdecode(os.fspath(path)))

    return hook


# -- where a write came from, and native writers ------------------------------------


def locator(script: str) -> Callable[[], Optional[str]]:
    """A function giving the script's innermost frame as "line N" (or
    "file.py:N" for the user's other modules); None inside libraries only."""
    import sysconfig

    script = os.path.abspath(script)
    here = os.path.dirname(os.path.abspath(__file__))
    library = tuple(sorted({os.path.abspath(p) + "/" for k, p in sysconfig.get_paths().items()
                            if k in ("stdlib", "platstdlib", "purelib", "platlib") and p}))

    def locate() -> Optional[str]:
        frame = sys._getframe(2)
        other = None
        while frame is not None:
            name = frame.f_code.co_filename
            if name == script or os.path.abspath(name) == script:
                return "line %d" % frame.f_lineno
            if other is None and not name.startswith("<") and not name.startswith(here) and not (
                    os.path.abspath(name) + "/").startswith(library):
                other = "%s:%d" % (os.path.basename(name), frame.f_lineno)
            frame = frame.f_back
        return other

    return locate


class _AfterImport:
    """A meta-path finder that calls ``patch(module)`` right after the named
    module is executed, before the script can take names from it."""

    def __init__(self, patches: Dict[str, Callable]):
        self.patches = dict(patches)

    def find_spec(self, name, path=None, target=None):
        if name not in self.patches:
            return None
        import importlib.util

        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, patch = spec.loader, self.patches.pop(name)

        class _Loader:
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                patch(module)

        spec.loader = _Loader()
        return spec


def redirect_native_writers(overlay: Overlay) -> None:
    """safetensors writes and reads by file name in Rust: map the name, so
    that its saves land in the shadow and its loads see them."""

    def patch_safetensors(module):
        serialize_file, safe_open = getattr(module, "serialize_file", None), getattr(module, "safe_open", None)
        if serialize_file is not None:
            def serialize(tensors, filename, *args, **kwargs):
                virtual = overlay.virtual(filename)
                if overlay.managed(virtual):
                    target = overlay.for_write(virtual, keep_content=False)
                    overlay.record("write", virtual, "redirected", "safetensors", target)
                    filename = target
                return serialize_file(tensors, filename, *args, **kwargs)

            module.serialize_file = serialize
        if safe_open is not None:
            def open_(filename, *args, **kwargs):
                virtual = overlay.virtual(filename)
                if overlay.managed(virtual):
                    filename = overlay.for_read(virtual)
                return safe_open(filename, *args, **kwargs)

            module.safe_open = open_

    if "safetensors" in sys.modules:
        patch_safetensors(sys.modules["safetensors"])
    else:
        sys.meta_path.insert(0, _AfterImport({"safetensors": patch_safetensors}))
