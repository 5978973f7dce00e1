"""Downloads with retries, size and checksum checks, and atomic writes.

TDC files are known to arrive as 0-byte files, and Dataverse sometimes answers with an HTML error page:
`min_bytes` catches both. Each download writes `<file>.source.json` (URL, bytes, SHA-256) beside the file;
a later run with the file present checks it against that record (or the pinned SHA-256, where one is
given) instead of downloading again. The record only guards against corruption: anyone who can place
a file can write its record too, so a pickle is unpickled only if `check_pickle` allows it.

A mirror (`mirrored`, config key `download_mirror`) serves every URL under `<mirror>/<host>/<path>`,
e.g. `file:///srv/mirror/huggingface.co/datasets/...`: the same code path (retries, checks, records)
reads a copy of the sources, on a machine without network or in tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tagllm.atomic import atomic_path, write_json
from tagllm.errors import UserError

log = logging.getLogger("tagllm")
USER_AGENT = "tagllm (https://github.com/tagllm/tagllm)"
# Largest answer `read_url` takes (a listing, not a data file).
MAX_ANSWER_BYTES = 16 << 20
T = TypeVar("T")


class DownloadError(RuntimeError):
    """A file could not be fetched, or arrived truncated or corrupted."""


def mirrored(url: str, mirror: str = "") -> str:
    """`url` as `mirror` serves it: `<mirror>/<host>/<path>` (the scheme dropped, e.g.
    https://huggingface.co/x -> file:///srv/mirror/huggingface.co/x); `url` itself without one."""
    if not mirror:
        return url
    _, separator, rest = url.partition("://")
    if not separator:
        raise ValueError(f"{url}: not an absolute URL")
    return f"{mirror.rstrip('/')}/{rest}"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_pickle(path: str | Path, pinned: str | None, trust: bool,
                 remedy: str = "rerun with --trust-pickle") -> None:
    """Allow unpickling `path` only if its SHA-256 is the pinned one, or if the user vouches for the
    file (`--trust-pickle`): unpickling runs code from the file. Raises UserError otherwise."""
    actual = sha256_of(path)
    if pinned and actual == pinned:
        return
    if trust:
        log.warning("%s: unpickling a file whose SHA-256 %s is not pinned (--trust-pickle)", path,
                    actual)
        return
    known = f"not the pinned {pinned}" if pinned else "and this version of tagllm pins none for it"
    raise UserError(f"{path}: refusing to unpickle it: its SHA-256 is {actual}, {known}; "
                     f"unpickling runs code from the file. If you trust this file, {remedy}.")


def fetch(url: str, dest: str | Path, *, min_bytes: int = 1, sha256: str | None = None,
          retries: int = 3, timeout: float = 120.0, backoff: float = 5.0) -> dict:
    """Download `url` to `dest` (atomically) and verify it; returns the provenance record."""
    dest = Path(dest)
    record_path = dest.with_name(dest.name + ".source.json")
    if dest.is_file():
        if record_path.is_file():
            record = json.loads(record_path.read_text())
            _verify(dest, url, min_bytes, sha256 or record.get("sha256"))
        else:  # placed by hand (e.g. copied from a machine with network)
            _verify(dest, url, min_bytes, sha256)
            record = {"url": url, "bytes": dest.stat().st_size, "sha256": sha256_of(dest),
                      "placed_by_user": True}
            write_json(record_path, record)
        log.info("%s: already present and verified", dest)
        return record
    def download() -> None:
        with atomic_path(dest) as tmp:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response, \
                    open(tmp, "wb") as out:
                shutil.copyfileobj(response, out, length=1 << 20)
            _verify(tmp, url, min_bytes, sha256)

    _with_retries(url, download, retries, backoff,
                  f"could not download to {dest}", "If this machine is offline, download the file "
                  f"where there is network and place it at {dest}, or run the download rules on a "
                  "login node first.")
    record = {"url": url, "bytes": dest.stat().st_size, "sha256": sha256_of(dest),
              "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(record_path, record)
    return record


def read_url(url: str, *, retries: int = 3, timeout: float = 60.0, backoff: float = 5.0) -> bytes:
    """The body of a small answer (a listing from an API), with `fetch`'s retries; nothing is
    written. More than `MAX_ANSWER_BYTES` is a DownloadError."""
    def read() -> bytes:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_ANSWER_BYTES + 1)
        if len(body) > MAX_ANSWER_BYTES:
            raise DownloadError(f"{url}: more than {MAX_ANSWER_BYTES:,} bytes (not a listing?)")
        return body

    return _with_retries(url, read, retries, backoff, "could not read it",
                         "Is this machine offline?")


def _with_retries(url: str, attempt_once: Callable[[], T], retries: int, backoff: float,
                  failed: str, remedy: str) -> T:
    """`attempt_once()`, tried up to `retries` times with a growing pause between tries; a
    DownloadError naming every try's reason if none succeeds."""
    errors: list[str] = []
    for attempt in range(1, retries + 1):
        try:
            return attempt_once()
        except (urllib.error.URLError, OSError, DownloadError) as error:
            reason = getattr(error, "reason", error)
            errors.append(f"try {attempt}: {reason}")
            log.warning("%s: download failed (%s)", url, reason)
            if attempt < retries:
                time.sleep(backoff * attempt)
    raise DownloadError(f"{url}: {failed} after {retries} tries ({'; '.join(errors)}). {remedy}")


def verify_present(dest: str | Path, min_bytes: int = 1, sha256: str | None = None) -> str:
    """Check a file already in place as `fetch` would before using it (size; SHA-256 against the
    pinned one, else against its `.source.json` record), without fetching or writing anything.
    Returns what was checked, in words; raises FileNotFoundError or DownloadError."""
    dest = Path(dest)
    if not dest.is_file():
        raise FileNotFoundError(f"{dest}: not found")
    record_path = dest.with_name(dest.name + ".source.json")
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    _verify(dest, str(dest), min_bytes, sha256 or (record or {}).get("sha256"))
    if sha256:
        return "SHA-256 pinned"
    if record is not None:
        return "SHA-256 as recorded"
    return "size only (placed by hand: no record yet)"


def _verify(path: Path, url: str, min_bytes: int, sha256: str | None) -> None:
    size = path.stat().st_size
    if size < min_bytes:
        raise DownloadError(f"{url}: got {size} bytes, expected at least {min_bytes} (truncated?)")
    if sha256 and sha256_of(path) != sha256:
        raise DownloadError(f"{url}: SHA-256 mismatch (expected {sha256}); the file is corrupted "
                            "or was changed upstream")
