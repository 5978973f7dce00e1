"""The paper's real data sources: where each lives and how it is fetched into `resources/downloads/`.

| source | what | file(s) |
|---|---|---|
| `opus100_<pair>` | OPUS-100 (Helsinki-NLP/opus-100) train split of a pair, e.g. `en-fr` | `train.parquet` |
| `flores101` | FLORES-101 dev/devtest (official tarball) | `devtest/<code>.devtest` |
| `binding_affinity` | jglaser/binding_affinity `data/all.parquet` | `all.parquet` |
| `tdc_bindingdb_patent` | TDC BindingDB_Patent (DTI-DG group), raw CSV | `bindingdb_patent.csv` |
| `tdc_drugcomb` | TDC DrugComb (DrugCombo group): pickle, as Parquet | `drugcomb.pkl`, `drugcomb.parquet` |

TDC ships DrugComb as a pandas pickle, and unpickling runs code from the file. The download that
fetches it converts it to `drugcomb.parquet` at once, so prepare steps never unpickle; a pickle it
did not fetch itself (placed by hand, or kept from an earlier run) is unpickled only if its SHA-256
is the one pinned in `SHA256_PINS` or the user passes `--trust-pickle` (`download.check_pickle`).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from tagllm.atomic import atomic_path, write_parquet
from tagllm.data.download import DownloadError, check_pickle, fetch

HF = "https://huggingface.co/datasets"
DATAVERSE = "https://dataverse.harvard.edu/api/access/datafile"
FLORES_URL = "https://dl.fbaipublicfiles.com/flores101/dataset/flores101_dataset.tar.gz"
# ISO 639-1 (the tags' names) -> FLORES-101 code.
FLORES_CODES = {"en": "eng", "fr": "fra", "ru": "rus", "de": "deu", "it": "ita", "el": "ell",
                "es": "spa", "pt": "por"}
OPUS_PAIRS = ("ca-en", "de-en", "el-en", "en-es", "en-fr", "en-it", "en-pt", "en-ru")
# TDC's Dataverse file ids (tdc/metadata.py: name2id).
TDC_FILES = {"tdc_bindingdb_patent": (4724851, "bindingdb_patent.csv", 10_000_000),
             "tdc_drugcomb": (4215720, "drugcomb.pkl", 10_000_000)}
# SHA-256 of each TDC file, checked on download and before a hand-placed pickle is unpickled.
# None: not pinned yet, because no machine with network has fetched the file for this repository;
# to pin one, download it where there is network, compare it with TDC's copy, and copy the `sha256`
# recorded in resources/downloads/<source>/<file>.source.json here (tests pin a fixture pickle).
SHA256_PINS: dict[str, str | None] = {"tdc_bindingdb_patent": None, "tdc_drugcomb": None}
SOURCES = ("flores101", "binding_affinity", *TDC_FILES, *(f"opus100_{p}" for p in OPUS_PAIRS))
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
    raise KeyError(f"unknown source {source!r}; known: {sorted(SOURCES)}")


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
    raise KeyError(f"unknown source {source!r}; known: {sorted(SOURCES)}")


def download_source(source: str, out_dir: str | Path, retries: int = 3,
                    trust_pickle: bool = False) -> list[Path]:
    """Fetch one source into `out_dir`; returns the files written. `trust_pickle`: convert a
    DrugComb pickle found in place even if its SHA-256 is not the pinned one."""
    out_dir = Path(out_dir)
    if source.startswith("opus100_"):
        pair = source.removeprefix("opus100_")
        if pair not in OPUS_PAIRS:
            raise KeyError(f"unknown OPUS-100 pair {pair!r}; known: {OPUS_PAIRS}")
        _download_opus(pair, out_dir / "train.parquet", retries)
    elif source == "flores101":
        tarball = out_dir / FLORES_TARBALL
        fetch(FLORES_URL, tarball, min_bytes=LARGE_FILE_MIN_BYTES, retries=retries)
        extract_flores(tarball, out_dir)
    elif source == "binding_affinity":
        fetch(f"{HF}/jglaser/binding_affinity/resolve/main/data/all.parquet",
              out_dir / "all.parquet", min_bytes=LARGE_FILE_MIN_BYTES, retries=retries)
    elif source in TDC_FILES:
        file_id, name, min_bytes = TDC_FILES[source]
        fetched_now = not (out_dir / name).is_file()
        fetch(f"{DATAVERSE}/{file_id}", out_dir / name, min_bytes=min_bytes,
              sha256=SHA256_PINS[source], retries=retries)
        if source == "tdc_drugcomb":
            drugcomb_to_parquet(out_dir / name, fetched_now, trust_pickle)
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


def _download_opus(pair: str, dest: Path, retries: int) -> None:
    """Download the train shard(s) of one OPUS-100 pair and write them as one Parquet file."""
    import pandas as pd
    from huggingface_hub import HfApi

    try:
        files = HfApi().list_repo_files("Helsinki-NLP/opus-100", repo_type="dataset")
    except Exception as error:  # the hub client raises many types; all mean "cannot list"
        raise DownloadError(f"cannot list Helsinki-NLP/opus-100 on the hub ({error}); offline?") \
            from error
    shards = sorted(f for f in files if f.startswith(f"{pair}/train-") and f.endswith(".parquet"))
    if not shards:
        raise DownloadError(f"Helsinki-NLP/opus-100 has no train shards for {pair}")
    parts = []
    for shard in shards:
        local = dest.parent / "shards" / Path(shard).name
        fetch(f"{HF}/Helsinki-NLP/opus-100/resolve/main/{shard}", local, min_bytes=OPUS_SHARD_MIN_BYTES,
              retries=retries)
        parts.append(pd.read_parquet(local))
    write_parquet(dest, pd.concat(parts, ignore_index=True))
