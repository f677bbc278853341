"""The one output-folder policy: every command and API that writes a folder goes through here.

- A folder is built in a temporary sibling (``.<name>.tmp-<pid>-<random>``) and moved into place at the end, so a
  crash or a bad input never leaves a half-written folder behind.
- An existing folder is reused or replaced only if it holds our own output (recognised by the record
  ``.fastformers-output.json`` that every writer leaves) of the same kind; our output of another kind is replaced
  only with ``overwrite=True`` (``--overwrite_output_dir``); a folder holding anything else is never touched.
- An output equal to, inside, or containing one of the inputs is always refused.
- Temporary and work folders live beside the output, carry the process id, and those of killed processes are
  removed the next time the same output is written.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import FastFormersError

# Left in every folder we write: what wrote it. Hidden, so a Hub push does not upload it.
OUTPUT_RECORD = ".fastformers-output.json"
_TEMP_TAGS = ("tmp", "old", "work")
# Entries an empty-looking folder may hold without being "someone's files".
_HARMLESS = {".DS_Store", OUTPUT_RECORD}

PathLike = str | os.PathLike


def output_kind(path: PathLike) -> str | None:
    """The kind of our output that ``path`` holds (``"prune"``, ``"onnx"``, ...), or None if it is not ours."""
    record = read_json(Path(path) / OUTPUT_RECORD) if Path(path).is_dir() else None
    return record.get("kind") if isinstance(record, dict) else None


def _foreign_entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name not in _HARMLESS and not _is_our_temp(p.name))


def _is_our_temp(name: str) -> bool:
    return name.startswith(".") and any(f".{tag}-" in name for tag in _TEMP_TAGS)


def check_output_dir(target: PathLike, kind: str, inputs: Iterable[PathLike | None] = (), overwrite: bool = False,
                     what: str = "output directory", overwrite_flag: str = "--overwrite_output_dir") -> Path:
    """Refuse an output folder that would lose a user's files or an input; returns the resolved path.

    Raises ``FastFormersError`` naming the path and the fix; writes nothing (``--dry-run`` calls it alone).
    """
    target = Path(target).expanduser()
    resolved = target.resolve()
    for parent in [resolved, *resolved.parents]:
        if parent.exists() and not parent.is_dir():
            if parent == resolved:
                raise FastFormersError(f"the {what} {target} is a file, not a folder; choose a folder path.")
            raise FastFormersError(f"the {what} {target} cannot be created: {parent} is a file, not a folder; "
                                   "choose a path under a folder.")
    for source in inputs:
        if source is None or not isinstance(source, (str, os.PathLike)) or not Path(source).exists():
            continue  # a Hub id or a loaded model: nothing on disk to protect
        src = Path(source).resolve()
        if resolved == src or src in resolved.parents:
            raise FastFormersError(f"the {what} {target} is {'the input' if resolved == src else 'inside the input'} "
                                   f"{source}; inputs are never overwritten: choose a folder outside it.")
        if resolved in src.parents:
            raise FastFormersError(f"the {what} {target} contains the input {source}; writing it would replace the "
                                   "input: choose a folder that does not contain it.")
    if not target.exists():
        return resolved
    found = output_kind(target)
    if found == kind:
        return resolved
    foreign = _foreign_entries(target)
    if not foreign:
        return resolved
    if found is not None:
        if overwrite:
            return resolved
        raise FastFormersError(f"the {what} {target} holds the output of `{found}`, not of `{kind}`; pass "
                               f"{overwrite_flag} to replace it, or choose another folder.")
    shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
    raise FastFormersError(f"the {what} {target} already holds files that fastformers-hf did not write ({shown}); "
                           "they are never replaced: choose a new or empty folder.")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove_dead(candidates: Iterable[Path]) -> list[Path]:
    """Remove those of our temporary folders whose process (the pid in their name) no longer runs."""
    removed = []
    for p in candidates:
        tag = next((t for t in _TEMP_TAGS if f".{t}-" in p.name), None)
        pid = p.name.rsplit(f".{tag}-", 1)[1].split("-", 1)[0] if tag else ""
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def remove_stale_temps(target: PathLike) -> list[Path]:
    """Remove the temporary/work siblings of ``target`` left by processes that no longer run."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    return _remove_dead(p for tag in _TEMP_TAGS for p in target.parent.glob(f".{target.name}.{tag}-*"))


def _sibling(target: Path, tag: str) -> Path:
    path = target.parent / f".{target.name}.{tag}-{os.getpid()}-{secrets.token_hex(3)}"
    path.mkdir()
    return path


def write_output_record(folder: PathLike, kind: str) -> None:
    from .. import __version__

    write_json(Path(folder) / OUTPUT_RECORD, {"kind": kind, "fastformers_hf": __version__,
                                              "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


@contextlib.contextmanager
def atomic_output_dir(target: PathLike, kind: str = "output", inputs: Iterable[PathLike | None] = (),
                      overwrite: bool = False, overwrite_flag: str = "--overwrite_output_dir") -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target``, with our record in it.

    ``target`` must pass :func:`check_output_dir`. On any exception the temporary folder is removed and
    ``target`` is left as it was.
    """
    target = Path(target)
    inputs = list(inputs)
    check_output_dir(target, kind, inputs, overwrite, overwrite_flag=overwrite_flag)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = _sibling(target, "tmp")
    try:
        yield tmp
        write_output_record(tmp, kind)
        check_output_dir(target, kind, inputs, overwrite, overwrite_flag=overwrite_flag)  # nobody wrote there since
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    backup = None
    if target.exists():
        backup = target.with_name(f".{target.name}.old-{os.getpid()}-{secrets.token_hex(3)}")
        os.replace(target, backup)
    os.replace(tmp, target)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def work_dir_beside(target: PathLike) -> Iterator[Path]:
    """A scratch folder beside ``target`` (not in the system temp, which may be small), removed afterwards."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    work = _sibling(target, "work")
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def claim_output_dir(target: PathLike, kind: str, inputs: Iterable[PathLike | None] = (), overwrite: bool = False,
                     overwrite_flag: str = "--overwrite_output_dir") -> Path:
    """For writers that fill a folder over time (training runs, staged recipes, benchmarks): check the folder,
    create it and leave our record in it, so a rerun recognises and resumes it. Returns the path.

    ``overwrite`` empties our own output of another kind first; a folder with someone else's files is refused.
    """
    target = Path(target)
    check_output_dir(target, kind, inputs, overwrite, overwrite_flag=overwrite_flag)
    found = output_kind(target)
    if target.exists() and found is not None and found != kind:  # overwrite=True was checked above
        for p in target.iterdir():
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    target.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    _remove_dead(p for p in target.glob(".*") if _is_our_temp(p.name))  # e.g. stage builds of a killed run
    if found != kind:
        write_output_record(target, kind)
    return target


def read_json(path: PathLike, default=None):
    path = Path(path)
    if not path.exists():
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path: PathLike, data) -> Path:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, path)
    return path
