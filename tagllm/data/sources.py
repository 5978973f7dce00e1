"""The paper's real data sources: where each lives and how it is fetched into `resources/downloads/`.

| source | what | file(s) |
|---|---|---|
| `opus100_<pair>` | OPUS-100 (Helsinki-NLP/opus-100) train split of a pair, e.g. `en-fr` | `train.parquet` |
| `flores101` | FLORES-101 dev/devtest (official tarball) | `devtest/<code>.devtest` |
| `binding_affinity` | jglaser/binding_affinity `data/all.parquet` | `all.parquet` |
| `tdc_bindingdb_patent` | TDC BindingDB_Patent (DTI-DG group), raw CSV | `bindingdb_patent.csv` |
| `tdc_drugcomb` | TDC DrugComb (DrugCombo group): pickle, as Parquet | `drugcomb.pkl`, `drugcomb.parquet` |
| `tdc_dti_dg_group` | TDC DTI-DG group, `dti_dg_group.zip` | `<zip>/bindingdb_patent/{train_val,test}.csv` |
| `tdc_drugcombo_group` | TDC DrugCombo group, `drugcombo_group.zip` | `<zip>/drugcomb_css/*.{pkl,parquet}` |

(`<zip>` is the archive's own top folder, `dti_dg_group/` or `drugcombo_group/`.)

TDC ships DrugComb as a pandas pickle, and unpickling runs code from the file. The download that
fetches it converts it to `drugcomb.parquet` at once, so prepare steps never unpickle; a pickle it
did not fetch itself (placed by hand, or kept from an earlier run) is unpickled only if its SHA-256
is the one pinned in `SHA256_PINS` or the user passes `--trust-pickle` (`download.check_pickle`).
The benchmark groups are zip archives (as TDC's `bm_download_wrapper` fetches them): only the files
tagllm reads are extracted, each to a path of ours (never to a name taken from the archive, so an
entry such as `../x` cannot write outside the folder), with a size limit and a `.source.json` record
naming the archive and its SHA-256. The DrugCombo group's pickles are converted to Parquet by the
download that fetched the archive; from an archive it did not fetch, only under the same rule
(its SHA-256 pinned, or `--trust-pickle`).

OPUS-100 comes from one pinned commit of the hub repository `Helsinki-NLP/opus-100`
(`opus_revision()`; a branch given instead is resolved to a commit by the hub's API), whose tree
the hub's API lists for the pair's shards (with
the SHA-256 it holds for each), every shard is fetched from `resolve/<commit>/` and checked against
that SHA-256, and `train.parquet.source.json` records the commit.

Every URL goes through `download.mirrored`: with a mirror (`--mirror`, config `download_mirror`),
`https://<host>/<path>` is read from `<mirror>/<host>/<path>` instead, the hub's API answers
included (`<mirror>/huggingface.co/api/datasets/Helsinki-NLP/opus-100/tree/<commit>/<pair>`, and
`.../revision/<branch>` for a branch), so a copy of the sources, e.g. under `file://`, goes
through the same checks.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tagllm.atomic import atomic_path, write_json, write_parquet
from tagllm.data.download import DownloadError, check_pickle, fetch, mirrored, read_url, sha256_of

HF = "https://huggingface.co/datasets"
HF_API = "https://huggingface.co/api/datasets"  # the hub's HTTP API (what HfApi calls)
DATAVERSE = "https://dataverse.harvard.edu/api/access/datafile"
FLORES_URL = "https://dl.fbaipublicfiles.com/flores101/dataset/flores101_dataset.tar.gz"
# ISO 639-1 (the tags' names) -> FLORES-101 code.
FLORES_CODES = {"en": "eng", "fr": "fra", "ru": "rus", "de": "deu", "it": "ita", "el": "ell",
                "es": "spa", "pt": "por"}
OPUS_PAIRS = ("ca-en", "de-en", "el-en", "en-es", "en-fr", "en-it", "en-pt", "en-ru")
# TDC's Dataverse file ids (tdc/metadata.py: name2id).
TDC_FILES = {"tdc_bindingdb_patent": (4724851, "bindingdb_patent.csv", 10_000_000),
             "tdc_drugcomb": (4215720, "drugcomb.pkl", 10_000_000)}


@dataclass(frozen=True)
class TdcGroup:
    """A TDC benchmark group: its Dataverse file id (tdc/metadata.py `benchmark2id`), the archive
    TDC saves it as (`<group>.zip`), and the archive's files tagllm reads (paths inside it, which
    are also where they are extracted to under the source's folder)."""

    file_id: int
    archive: str
    members: tuple[str, ...]
    min_bytes: int = 1_000_000

    def pickles(self) -> list[str]:
        return [member for member in self.members if member.endswith(".pkl")]


# TDC extracts `<group>.zip` into its data folder and reads `<group>/<benchmark>/{train_val,test}`
# (tdc/utils/load.py bm_download_wrapper, tdc/benchmark_group/base_group.py).
TDC_GROUPS = {
    "tdc_dti_dg_group": TdcGroup(4742443, "dti_dg_group.zip",
                                 ("dti_dg_group/bindingdb_patent/train_val.csv",
                                  "dti_dg_group/bindingdb_patent/test.csv")),
    "tdc_drugcombo_group": TdcGroup(4426002, "drugcombo_group.zip",
                                    ("drugcombo_group/drugcomb_css/train_val.pkl",
                                     "drugcombo_group/drugcomb_css/test.pkl")),
}
# SHA-256 of each TDC file (a source's fetched file, or a benchmark group's pickle by its path in
# the archive), checked on download and before a hand-placed pickle is unpickled.
# None: not pinned yet, because no machine with network has fetched the file for this repository;
# to pin one, download it where there is network, compare it with TDC's copy, and copy the `sha256`
# recorded in resources/downloads/<source>/<file>.source.json here (tests pin a fixture pickle).
SHA256_PINS: dict[str, str | None] = {
    "tdc_bindingdb_patent": None, "tdc_drugcomb": None,
    "tdc_dti_dg_group": None, "tdc_drugcombo_group": None,
    "drugcombo_group/drugcomb_css/train_val.pkl": None,
    "drugcombo_group/drugcomb_css/test.pkl": None,
}
SOURCES = ("flores101", "binding_affinity", *TDC_FILES, *TDC_GROUPS,
           *(f"opus100_{p}" for p in OPUS_PAIRS))
OPUS_REPO = "Helsinki-NLP/opus-100"
# The commit of the hub repository OPUS-100 is downloaded from, so that every run reads the same
# shards ($TAGLLM_OPUS100_REVISION overrides it: another commit, or a branch such as "main", which
# each download resolves to the commit it names then). Each download records the commit and each
# shard's SHA-256 in opus100_<pair>/train.parquet.source.json. This commit comes after the
# repository's conversion to Parquet (early 2024: one commit per pair, in alphabetical order, each
# adding <pair>/{train,validation,test}-*.parquet), and it is the revision that MTEB and other
# evaluation suites pin for OPUS-100. It was chosen offline, from those public references, not by
# listing its tree: the first download checks that each pair has train shards there and fails
# naming the pair and the commit if not. 81674d2c6d6073c822d131b2627b192fdca2c291 ("Add en-yo data
# files", whose en-fr folder the hub shows with train-00000-of-00001.parquet) is the fallback.
OPUS_REVISION = "805090dc28bf78897da9641cdf08b61287580df9"
COMMIT = re.compile(r"[0-9a-f]{40}")
# Largest file extracted from a benchmark-group archive (a zip bomb stops here, not at a full disk).
MAX_MEMBER_BYTES = 16 << 30
FLORES_TARBALL = "flores101_dataset.tar.gz"
# Least plausible size of a fetched file: catches 0-byte files and HTML error pages.
LARGE_FILE_MIN_BYTES = 1_000_000  # the FLORES-101 tarball, jglaser's all.parquet
OPUS_SHARD_MIN_BYTES = 1000


def source_files(source: str) -> list[str]:
    """Files (relative to the source's folder) that `download_source` creates."""
    if source.startswith("opus100_"):
        return ["train.parquet"]
    if source == "flores101":
        return [f"devtest/{code}.devtest" for code in FLORES_CODES.values()]
    if source == "binding_affinity":
        return ["all.parquet"]
    if source == "tdc_drugcomb":
        return [TDC_FILES[source][1], "drugcomb.parquet"]
    if source in TDC_FILES:
        return [TDC_FILES[source][1]]
    if source in TDC_GROUPS:
        group = TDC_GROUPS[source]
        return [*group.members, *(str(Path(p).with_suffix(".parquet")) for p in group.pickles())]
    raise KeyError(f"unknown source {source!r}; known: {sorted(SOURCES)}")


def downloads_folder(root: str | Path, source: str) -> Path:
    """Where a prepare step finds `source`'s files when given `root`: `root/<source>/` (as the
    download rule lays out resources/downloads/), or `root` itself when that folder does not exist
    (a folder holding the source's files directly)."""
    root = Path(root)
    return root / source if (root / source).is_dir() else root


def fetched_files(source: str, out_dir: str | Path) -> list[tuple[Path, int, str | None]]:
    """The files `download_source` fetches into `out_dir` (before extracting or converting them),
    each with the least size and the pinned SHA-256 it is checked against; OPUS-100's shards as
    found there (the hub lists them only online)."""
    out_dir = Path(out_dir)
    if source.startswith("opus100_"):
        shards = sorted((out_dir / "shards").glob("*.parquet"))
        return [(shard, OPUS_SHARD_MIN_BYTES, None) for shard in shards]
    if source == "flores101":
        return [(out_dir / FLORES_TARBALL, LARGE_FILE_MIN_BYTES, None)]
    if source == "binding_affinity":
        return [(out_dir / "all.parquet", LARGE_FILE_MIN_BYTES, None)]
    if source in TDC_FILES:
        _, name, min_bytes = TDC_FILES[source]
        return [(out_dir / name, min_bytes, SHA256_PINS[source])]
    if source in TDC_GROUPS:
        group = TDC_GROUPS[source]
        return [(out_dir / group.archive, group.min_bytes, SHA256_PINS[source])]
    raise KeyError(f"unknown source {source!r}; known: {sorted(SOURCES)}")


def source_url(source: str) -> str:
    """Where a source's file is fetched from (before any mirror); OPUS-100's shards are listed by
    the hub (`_download_opus`)."""
    if source == "flores101":
        return FLORES_URL
    if source == "binding_affinity":
        return f"{HF}/jglaser/binding_affinity/resolve/main/data/all.parquet"
    if source in TDC_FILES:
        return f"{DATAVERSE}/{TDC_FILES[source][0]}"
    if source in TDC_GROUPS:
        return f"{DATAVERSE}/{TDC_GROUPS[source].file_id}"
    raise KeyError(f"{source!r} has no single URL; known: {sorted(SOURCES)}")


def download_source(source: str, out_dir: str | Path, retries: int = 3,
                    trust_pickle: bool = False, mirror: str = "") -> list[Path]:
    """Fetch one source into `out_dir`; returns the files written. `trust_pickle`: convert a
    DrugComb pickle found in place even if its SHA-256 is not the pinned one. `mirror`: read
    every URL from there (`download.mirrored`)."""
    out_dir = Path(out_dir)
    if source.startswith("opus100_"):
        pair = source.removeprefix("opus100_")
        if pair not in OPUS_PAIRS:
            raise KeyError(f"unknown OPUS-100 pair {pair!r}; known: {OPUS_PAIRS}")
        _download_opus(pair, out_dir / "train.parquet", retries, mirror)
    elif source == "flores101":
        tarball = out_dir / FLORES_TARBALL
        fetch(mirrored(source_url(source), mirror), tarball, min_bytes=LARGE_FILE_MIN_BYTES,
              retries=retries)
        extract_flores(tarball, out_dir)
    elif source == "binding_affinity":
        fetch(mirrored(source_url(source), mirror), out_dir / "all.parquet",
              min_bytes=LARGE_FILE_MIN_BYTES, retries=retries)
    elif source in TDC_FILES:
        _, name, min_bytes = TDC_FILES[source]
        fetched_now = not (out_dir / name).is_file()
        fetch(mirrored(source_url(source), mirror), out_dir / name, min_bytes=min_bytes,
              sha256=SHA256_PINS[source], retries=retries)
        if source == "tdc_drugcomb":
            drugcomb_to_parquet(out_dir / name, fetched_now, trust_pickle)
    elif source in TDC_GROUPS:
        download_tdc_group(source, out_dir, retries, trust_pickle, mirror)
    else:
        raise KeyError(f"unknown source {source!r}; known: {sorted(SOURCES)}")
    return [out_dir / name for name in source_files(source)]


def drugcomb_to_parquet(pickle_path: Path, fetched_now: bool, trust_pickle: bool) -> Path:
    """Write the columns tagllm reads from TDC's DrugComb pickle to `drugcomb.parquet` beside it.

    A pickle this process has just fetched is converted as trusted as its source; any other one
    must pass `check_pickle` (pinned SHA-256 or `--trust-pickle`). An up-to-date Parquet file is
    kept as it is."""
    import pandas as pd

    from tagllm.data.tdc import drugcomb_columns

    target = pickle_path.with_suffix(".parquet")
    if not fetched_now and target.is_file() and \
            target.stat().st_mtime >= pickle_path.stat().st_mtime:
        return target
    if not fetched_now:
        check_pickle(pickle_path, SHA256_PINS["tdc_drugcomb"], trust_pickle)
    write_parquet(target, drugcomb_columns(pd.read_pickle(pickle_path), pickle_path))
    return target


def download_tdc_group(source: str, out_dir: str | Path, retries: int = 3,
                       trust_pickle: bool = False, mirror: str = "") -> list[Path]:
    """Fetch one TDC benchmark-group archive into `out_dir` (retries, size and pinned-checksum
    checks, provenance record: `fetch`), extract the files tagllm reads (`extract_members`) and
    convert its pickles to Parquet. Files already extracted from this archive are kept."""
    group = TDC_GROUPS[source]
    out_dir = Path(out_dir)
    archive = out_dir / group.archive
    fetched_now = not archive.is_file()
    record = fetch(mirrored(source_url(source), mirror), archive, min_bytes=group.min_bytes,
                   sha256=SHA256_PINS[source], retries=retries)
    wanted = [out_dir / name for name in source_files(source)]
    if not fetched_now and all(_extracted_from(path, record) for path in wanted):
        return wanted
    if group.pickles() and not fetched_now:
        # An archive this process did not fetch: its pickles run code when read.
        check_pickle(archive, SHA256_PINS[source], trust_pickle,
                     f"rerun `python -m tagllm download --source {source} --out-dir {out_dir} "
                     "--trust-pickle`")
    extract_members(archive, out_dir, group.members, record)
    for member in group.pickles():
        group_pickle_to_parquet(out_dir / member)
    return wanted


def _extracted_from(path: Path, record: dict) -> bool:
    """`path` exists and its provenance (or, for a converted file, its pickle's) names the archive
    whose record is `record`."""
    source = path.with_suffix(".pkl") if path.suffix == ".parquet" else path
    record_path = source.with_name(source.name + ".source.json")
    if not (path.is_file() and record_path.is_file()):
        return False
    try:
        return json.loads(record_path.read_text()).get("archive_sha256") == record.get("sha256")
    except (OSError, ValueError):
        return False


def _member_name(name: str) -> str | None:
    """An archive entry's name as a relative POSIX path, or None for one that could point outside
    the folder it is extracted to (absolute, a drive letter, a `..` part); such entries are never
    read."""
    name = name.replace("\\", "/").removeprefix("./")
    parts = name.split("/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        return None
    return name


def extract_members(archive: str | Path, out_dir: str | Path, members: tuple[str, ...] | list[str],
                    record: dict | None = None, max_bytes: int = MAX_MEMBER_BYTES) -> list[Path]:
    """Extract `members` (relative paths inside the zip `archive`) to `out_dir/<member>`, each
    atomically, with `<member>.source.json` (archive, its SHA-256 and URL, the member, bytes,
    SHA-256). The destination is built from `members`, never from the archive's own names, and an
    entry larger than `max_bytes` (declared or read) is refused, so no archive can write outside
    `out_dir` or fill the disk. A missing member or an unreadable archive is a DownloadError."""
    archive, out_dir = Path(archive), Path(out_dir)
    record = record or {"url": str(archive), "sha256": sha256_of(archive)}
    written = []
    try:
        with zipfile.ZipFile(archive) as zipped:
            entries = {}
            for info in zipped.infolist():
                name = _member_name(info.filename)
                if name is not None and not info.is_dir():
                    entries.setdefault(name, info)
            missing = [member for member in members if member not in entries]
            if missing:
                raise DownloadError(f"{archive}: not the expected TDC archive: {missing} not in it "
                                    f"(it holds {sorted(entries)[:8]}); delete it and download "
                                    "again")
            for member in members:
                info = entries[member]
                if info.file_size > max_bytes:
                    raise DownloadError(f"{archive}: {member} would extract to {info.file_size:,} "
                                        f"bytes, more than the {max_bytes:,} allowed")
                dest = out_dir / member
                with zipped.open(info) as source, atomic_path(dest) as tmp, \
                        open(tmp, "wb") as out:
                    copied = 0
                    while block := source.read(1 << 20):
                        copied += len(block)
                        if copied > max_bytes:
                            raise DownloadError(f"{archive}: {member} extracts to more than "
                                                f"{max_bytes:,} bytes")
                        out.write(block)
                write_json(dest.with_name(dest.name + ".source.json"),
                           {"archive": archive.name, "archive_url": record.get("url"),
                            "archive_sha256": record.get("sha256"), "member": member,
                            "bytes": dest.stat().st_size, "sha256": sha256_of(dest)})
                written.append(dest)
    except zipfile.BadZipFile as error:  # also a CRC mismatch while reading a member
        raise DownloadError(f"{archive}: not a readable zip archive ({error}); delete it and "
                            "download again") from error
    return written


def group_pickle_to_parquet(pickle_path: Path) -> Path:
    """Convert a DrugCombo-group pickle that this download extracted (as trusted as the archive it
    came from) to Parquet beside it: the columns tagllm reads, every row in file order."""
    import pandas as pd

    from tagllm.data.tdc import drugcomb_group_columns

    target = pickle_path.with_suffix(".parquet")
    write_parquet(target, drugcomb_group_columns(pd.read_pickle(pickle_path), pickle_path))
    return target


def extract_flores(tarball: str | Path, out_dir: str | Path) -> None:
    """Extract the devtest files of our languages from the FLORES-101 tarball."""
    out_dir = Path(out_dir)
    wanted = {f"flores101_dataset/devtest/{code}.devtest" for code in FLORES_CODES.values()}
    (out_dir / "devtest").mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as archive:
        members = {m.name.removeprefix("./"): m for m in archive.getmembers()}
        missing = wanted - set(members)
        if missing:
            raise DownloadError(f"{tarball}: not the FLORES-101 tarball, missing {sorted(missing)}")
        for name in sorted(wanted):
            data = archive.extractfile(members[name]).read()
            with atomic_path(out_dir / "devtest" / Path(name).name) as tmp:
                tmp.write_bytes(data)


def opus_revision() -> str:
    """The revision of Helsinki-NLP/opus-100 to download: $TAGLLM_OPUS100_REVISION, else
    `OPUS_REVISION`."""
    return os.environ.get("TAGLLM_OPUS100_REVISION", "").strip() or OPUS_REVISION


def _hub_answer(path: str, mirror: str, retries: int) -> object:
    """The hub API's JSON answer at `HF_API/<OPUS_REPO>/<path>` (through `mirror`)."""
    url = mirrored(f"{HF_API}/{OPUS_REPO}/{path}", mirror)
    try:
        return json.loads(read_url(url, retries=retries))
    except (DownloadError, ValueError) as error:  # ValueError: not JSON (an error page)
        raise DownloadError(f"cannot list {OPUS_REPO} on the hub ({error}); offline, or no such "
                            "revision?") from error


def opus_shards(pair: str, revision: str, mirror: str = "", retries: int = 3
                ) -> tuple[str, list[tuple[str, str | None]]]:
    """(commit, [(shard, SHA-256 or None)]): `revision` resolved to a commit by the hub's API
    (`/revision/<revision>`, as HfApi.dataset_info asks; a commit is taken as it is), and the
    train shards of `pair` in that commit's tree (`/tree/<commit>/<pair>`, as
    HfApi.list_repo_tree asks), each with the SHA-256 the hub records for it (its LFS object id)."""
    if COMMIT.fullmatch(revision):
        commit = revision
    else:
        answer = _hub_answer(f"revision/{quote(revision, safe='')}", mirror, retries)
        commit = answer.get("sha") if isinstance(answer, dict) else None
    if not commit or not COMMIT.fullmatch(str(commit)):
        raise DownloadError(f"{OPUS_REPO}: revision {revision} did not resolve to a commit "
                            f"({commit!r})")
    tree = _hub_answer(f"tree/{commit}/{quote(pair, safe='')}", mirror, retries)
    if not isinstance(tree, list):
        raise DownloadError(f"{OPUS_REPO}: the hub's listing of {pair} at {commit} is not a list")
    shards = sorted((entry["path"], (entry.get("lfs") or {}).get("oid")) for entry in tree
                    if isinstance(entry, dict) and entry.get("type") == "file"
                    and str(entry.get("path", "")).startswith(f"{pair}/train-")
                    and str(entry["path"]).endswith(".parquet"))
    if not shards:
        raise DownloadError(f"{OPUS_REPO} has no train shards for {pair} at commit {commit}; "
                            "set $TAGLLM_OPUS100_REVISION to a commit that has them (or to main)")
    return commit, shards


def _download_opus(pair: str, dest: Path, retries: int, mirror: str = "") -> None:
    """Download the train shard(s) of one OPUS-100 pair, all from one commit of the hub repository
    (`opus_revision()` resolved), each checked against the SHA-256 the hub lists for it, and write
    them as one Parquet file with a provenance record."""
    import pandas as pd

    requested = opus_revision()
    commit, shards = opus_shards(pair, requested, mirror, retries)
    parts, fetched = [], []
    for shard, sha256 in shards:
        local = dest.parent / "shards" / Path(shard).name
        url = mirrored(f"{HF}/{OPUS_REPO}/resolve/{commit}/{shard}", mirror)
        _drop_if_from_elsewhere(local, url)
        record = fetch(url, local, min_bytes=OPUS_SHARD_MIN_BYTES, sha256=sha256, retries=retries)
        fetched.append({"file": shard, "url": url, "bytes": record.get("bytes"),
                        "sha256": record.get("sha256"), "sha256_listed": sha256})
        parts.append(pd.read_parquet(local))
    write_parquet(dest, pd.concat(parts, ignore_index=True))
    write_json(dest.with_name(dest.name + ".source.json"),
               {"repo": OPUS_REPO, "revision_requested": requested, "revision": commit,
                "pinned": requested == commit, "shards": fetched})


def _drop_if_from_elsewhere(local: Path, url: str) -> None:
    """Remove a shard kept from an earlier download of another revision (its record names another
    URL), so that `fetch` does not take it for this one."""
    record_path = local.with_name(local.name + ".source.json")
    if not (local.is_file() and record_path.is_file()):
        return
    try:
        recorded = json.loads(record_path.read_text()).get("url")
    except (OSError, ValueError):
        recorded = None
    if recorded != url:
        local.unlink()
        record_path.unlink()
