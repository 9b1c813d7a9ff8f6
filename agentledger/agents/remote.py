"""Agent projects from URLs: tarballs and git repositories, cached by URL.

``https://.../project.tar.gz`` (or ``.tgz``) is downloaded and extracted; a git URL
(``.git``, ``git+https://``, ``git+file://``, ``git@host:...``) is cloned shallowly. The
result lives in ``<cache dir>/<hash of the URL>`` and is reused until ``refresh``. An
archive is checked before anything is written: absolute paths, ``..`` components, links
pointing out of the tree and device files are refused with the member's name. A project
in a single top-level folder of the archive is found there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

import httpx2

from agentledger.agents.project import PROJECT_FILES
from agentledger.errors import ConfigError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
DEFAULT_CACHE = Path("~/.agentledger/cache").expanduser()


def is_url(text: str) -> bool:
    return "://" in text or text.startswith("git@")


def _is_git(url: str) -> bool:
    return url.startswith(("git+", "git@", "git://")) or url.rstrip("/").endswith(".git")


def _check_members(archive: tarfile.TarFile, url: str) -> None:
    for member in archive.getmembers():
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts:
            raise ConfigError(
                f"{url}: archive member {member.name!r} points outside the project; refused"
            )
        if member.issym() or member.islnk():
            target = PurePosixPath(member.linkname)
            resolved = target if target.is_absolute() else name.parent / target
            if target.is_absolute() or ".." in PurePosixPath(os.path.normpath(resolved)).parts:
                raise ConfigError(
                    f"{url}: archive member {member.name!r} links to {member.linkname!r}, outside "
                    "the project; refused"
                )
        if member.isdev():
            raise ConfigError(f"{url}: archive member {member.name!r} is a device file; refused")


def _download(url: str, into: Path) -> Path:
    path = into / "download.tar.gz"
    try:
        with httpx2.stream("GET", url, follow_redirects=True, timeout=60) as response:
            if response.status_code != 200:
                raise ConfigError(f"cannot download {url}: HTTP {response.status_code}")
            with path.open("wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
    except httpx2.HTTPError as exc:
        raise ConfigError(f"cannot download {url}: {exc}") from None
    return path


def _extract(url: str, archive_path: Path, into: Path) -> None:
    try:
        with tarfile.open(archive_path, "r:*") as archive:
            _check_members(archive, url)
            archive.extractall(into, filter="data")
    except tarfile.TarError as exc:
        raise ConfigError(f"{url} is not a readable tar.gz archive: {exc}") from None


def _clone(url: str, into: Path) -> None:
    source = url.removeprefix("git+")
    try:
        done = subprocess.run(
            ["git", "clone", "--quiet", "--depth", "1", source, str(into)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=300,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except FileNotFoundError:
        raise ConfigError(
            f"{url}: git is not installed; install it or download the project"
        ) from None
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["git clone failed"])[-1]
        raise ConfigError(f"cannot clone {url}: {detail}")


def _project_root(folder: Path) -> Path:
    if any((folder / name).is_file() for name in PROJECT_FILES):
        return folder
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


def fetch_project(url: str, cache_dir: Path, *, refresh: bool = False) -> Path:
    """The local directory of the project at ``url``, downloaded (or cloned) into the cache
    unless it is there already and ``refresh`` is not asked for."""
    if not _is_git(url) and not url.split("?")[0].endswith(ARCHIVE_SUFFIXES):
        raise ConfigError(
            f"{url}: not a project URL; use a .tar.gz/.tgz archive or a git URL "
            "(.git, git+https://, git@host:repo)"
        )
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    cache_dir.mkdir(parents=True, exist_ok=True)
    destination = cache_dir / key
    if destination.is_dir() and not refresh:
        return _project_root(destination)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
    try:
        if _is_git(url):
            _clone(url, work / "tree")
        else:
            (work / "tree").mkdir()
            _extract(url, _download(url, work), work / "tree")
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(work / "tree", destination)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _project_root(destination)
