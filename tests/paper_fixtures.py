"""Small files in the real formats of every source the paper preset downloads, and the writers the
source tests share.

`write_mirror(root)` lays them out as a download mirror (`<root>/<host>/<path>` of each source's URL,
`tagllm.data.download.mirrored`), so that `download_mirror: <root as file://>` serves them through
the download rule:

- `opus100_<pair>`: the hub API's answers (`api/datasets/Helsinki-NLP/opus-100/revision/main`,
  `.../tree/<commit>/<pair>`) and the pair's shards (`resolve/<commit>/<pair>/*.parquet`, one
  `translation` struct column);
- `flores101`: `flores101_dataset.tar.gz` with `flores101_dataset/devtest/<code>.devtest`;
- `binding_affinity`: jglaser's `data/all.parquet` (seq, smiles, smiles_can and affinity columns);
- `tdc_dti_dg_group`: Dataverse file 4742443, `dti_dg_group.zip`
  (`dti_dg_group/bindingdb_patent/{train_val,test}.csv`);
- `tdc_drugcombo_group`: Dataverse file 4426002, `drugcombo_group.zip`
  (`drugcombo_group/drugcomb_css/{train_val,test}.pkl`, and another benchmark's file).

The text is real: messages of Django's catalogs (installed with tagllm), aligned across the nine
languages, so that Cyrillic and Greek reach the tokenizer. Molecules come from tests/data/molecules.smi,
proteins are random sequences of the 20 standard residues. A few rows of each are bad on purpose (an
invalid SMILES, a non-standard residue, a duplicate), as real files have them.

The download checks want at least 1 MB of the FLORES-101 tarball, jglaser's all.parquet and each
TDC archive (the real ones are tens to hundreds of MB): each of these fixtures carries a block of
random bytes that tagllm never reads (a `fixture_padding` column or archive member) to pass them.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from tagllm.data import sources
from tagllm.data.kinds import OPUS_SIDE, TRAIN_PAIRS

DATA = Path(__file__).parent / "data"
# The OPUS-100 commit the mirror serves: the pinned one (its hub API also resolves `main` to it).
OPUS_COMMIT = sources.OPUS_REVISION
RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
PADDING_BYTES = 1_100_000  # over sources.LARGE_FILE_MIN_BYTES and each TdcGroup.min_bytes


# ----------------------------------------------------------------------------- writers
def write_opus(path: Path, a: str, b: str, rows) -> Path:
    """An OPUS-100 shard: one `translation` struct column keyed by the pair's two languages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"translation": [{a: x, b: y} for x, y in rows]}).to_parquet(path)
    return path


def make_flores_tarball(path: Path, n: int = 3, sentences: dict[str, list[str]] | None = None,
                        padding: int = 0) -> Path:
    """The FLORES-101 tarball's layout (`flores101_dataset/devtest/<code>.devtest`, one sentence a
    line, aligned across languages): `sentences` by ISO code, else `n` made-up lines each; with
    `padding` random bytes in a member nobody reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for lang, code in sources.FLORES_CODES.items():
            lines = sentences[lang] if sentences else [f"{code} sentence {i}" for i in range(n)]
            _add_to_tar(archive, f"flores101_dataset/devtest/{code}.devtest",
                        "".join(f"{line}\n" for line in lines).encode())
        if padding:
            _add_to_tar(archive, "flores101_dataset/fixture_padding.bin", random_bytes(padding))
    return path


def _add_to_tar(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def pickled(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_pickle(buffer)
    return buffer.getvalue()


def dti_group_files(train_val: pd.DataFrame, test: pd.DataFrame) -> dict[str, bytes]:
    """dti_dg_group.zip's entries (its top folder, then bindingdb_patent's two CSV files)."""
    train_member, test_member = sources.TDC_GROUPS["tdc_dti_dg_group"].members
    return {"dti_dg_group/": b"", train_member: train_val.to_csv(index=False).encode(),
            test_member: test.to_csv(index=False).encode()}


def dc_group_files(train_val: pd.DataFrame, test: pd.DataFrame) -> dict[str, bytes]:
    """drugcombo_group.zip's entries: drugcomb_css's two pickles, and another benchmark's file
    (the archive holds five; tagllm extracts only drugcomb_css)."""
    train_member, test_member = sources.TDC_GROUPS["tdc_drugcombo_group"].members
    return {"drugcombo_group/drugcomb_hsa/test.pkl": pickled(test),
            train_member: pickled(train_val), test_member: pickled(test)}


def random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(n)


# ----------------------------------------------------------------------------- contents
def molecules() -> list[str]:
    """The SMILES of tests/data/molecules.smi that RDKit parses, in file order."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    lines = (DATA / "molecules.smi").read_text().splitlines()
    smiles = [line.split("\t")[0] for line in lines]
    return [s for s in smiles if s and Chem.MolFromSmiles(s) is not None]


def proteins(n: int, seed: int = 0) -> list[str]:
    """`n` random sequences of the standard residues, 12 to 40 long."""
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(RESIDUES), size=int(rng.integers(12, 41)))) for _ in range(n)]


def messages(n: int) -> pd.DataFrame:
    """`n` short Django messages (no placeholders, 2 words or more) in the nine languages that
    OPUS-100's pairs of the preset need (Catalan for ca-en), aligned by row."""
    from tagllm.data.text import django_parallel

    languages = ("en", *sorted({lang for pair in OPUS_SIDE.values() for lang in pair.split("-")}
                               - {"en"}))
    frame, _ = django_parallel(languages)
    texts = frame.astype(str)
    fits = texts.apply(lambda row: all(len(v) <= 40 and not set(v) & set("%{}\n")
                                       for v in row) and len(row["en"].split()) >= 2, axis=1)
    chosen = texts[fits].reset_index(drop=True)
    if len(chosen) < n:
        raise ValueError(f"only {len(chosen)} Django messages fit, {n} wanted")
    return chosen.iloc[:n].reset_index(drop=True)


def binding_affinity_frame(rows: int = 30) -> pd.DataFrame:
    """jglaser/binding_affinity's all.parquet columns: one protein-ligand pair a row."""
    smiles, sequences = molecules(), proteins(24)
    sequences[5] = sequences[5][:6] + "X" + sequences[5][7:]  # a non-standard residue
    rng = np.random.default_rng(1)
    affinity = rng.uniform(0.01, 100.0, size=rows)
    return pd.DataFrame({"seq": [sequences[i % len(sequences)] for i in range(rows)],
                         "smiles": [smiles[i % len(smiles)] for i in range(rows)],
                         "affinity_uM": affinity,
                         "neg_log10_affinity_M": 6 - np.log10(affinity),
                         "smiles_can": [smiles[i % len(smiles)] for i in range(rows)],
                         "affinity": np.log10(affinity)})


def dti_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train_val, test) of the DTI-DG group's bindingdb_patent: train_val 2013-2016, test
    2019-2021; one invalid SMILES in train_val, one non-standard residue in the test file."""
    smiles, sequences = molecules(), proteins(8, seed=2)

    def rows(years, offset):
        return [{"Drug_ID": 1000 + offset + i, "Drug": smiles[(offset + i) % len(smiles)],
                 "Target_ID": f"P{(offset + i) % len(sequences)}",
                 "Target": sequences[(offset + i) % len(sequences)], "Y": 4.0 + (i % 7) / 2,
                 "Year": year} for i, year in enumerate(years)]

    train_val = pd.DataFrame(rows([2013, 2014, 2015, 2016] * 5, 0))
    train_val.loc[3, "Drug"] = "not smiles"
    test = pd.DataFrame(rows([2019, 2020, 2021] * 2, 20))
    test.loc[4, "Target"] = "MKXB"
    return train_val, test


def dc_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train_val, test) of the DrugCombo group's drugcomb_css: 14 drug pairs in both cell lines
    and 2 in one only; the test file with TDC's tissue (target_class) and one unclosed ring."""
    smiles = molecules()
    rng = np.random.default_rng(3)
    cell = np.array([0.1, 0.2, 0.3])
    train_val = pd.DataFrame(
        [{"Drug1_ID": f"D{i}", "Drug1": smiles[i], "Drug2_ID": f"D{i + 20}",
          "Drug2": smiles[i + 20], "CellLine": cell, "Cell_Line_ID": line,
          "Y": float(rng.normal(10, 5))} for line in ("MCF7", "A549") for i in range(14)]
        + [{"Drug1_ID": f"D{i}", "Drug1": smiles[i], "Drug2_ID": "D40", "Drug2": smiles[40],
            "CellLine": cell, "Cell_Line_ID": "MCF7", "Y": 3.0} for i in (15, 16)])
    tissues = ["breast", "lung", "breast", "skin", "lung", "breast"]
    test = pd.DataFrame([{"Drug1_ID": f"D{30 + i}", "Drug1": smiles[30 + i], "Drug2_ID": f"D{i}",
                          "Drug2": smiles[i], "CellLine": cell,
                          "Cell_Line_ID": ("MCF7", "A549")[i % 2], "target_class": tissue,
                          "Y": float(rng.normal(10, 5))} for i, tissue in enumerate(tissues)])
    test.loc[2, "Drug2"] = "C1CC"
    return train_val, test


# ----------------------------------------------------------------------------- the mirror
def mirror_path(root: Path, url: str) -> Path:
    """Where the mirror at `root` holds `url` (`download.mirrored`'s layout)."""
    return Path(root) / url.partition("://")[2]


def write_mirror(root: Path, n_messages: int = 12, flores_lines: int = 3) -> str:
    """Every file the paper preset downloads, under `root` as a mirror serves them; returns the
    mirror's file:// URL (the value of `download_mirror`)."""
    root = Path(root)
    texts = messages(n_messages + flores_lines)
    _write_opus_mirror(root, texts.iloc[:n_messages])
    flores = texts.iloc[n_messages:]
    make_flores_tarball(mirror_path(root, sources.source_url("flores101")),
                        sentences={lang: list(flores[lang]) for lang in sources.FLORES_CODES},
                        padding=PADDING_BYTES)
    affinity = binding_affinity_frame()
    affinity["fixture_padding"] = [random_bytes(PADDING_BYTES // len(affinity), seed=i)
                                   for i in range(len(affinity))]
    path = mirror_path(root, sources.source_url("binding_affinity"))
    path.parent.mkdir(parents=True, exist_ok=True)
    affinity.to_parquet(path)
    padding = {"fixture_padding.bin": random_bytes(PADDING_BYTES)}
    write_zip(mirror_path(root, sources.source_url("tdc_dti_dg_group")),
              {**dti_group_files(*dti_frames()), **padding})
    write_zip(mirror_path(root, sources.source_url("tdc_drugcombo_group")),
              {**dc_group_files(*dc_frames()), **padding})
    return root.resolve().as_uri()


def _write_opus_mirror(root: Path, texts: pd.DataFrame) -> None:
    """OPUS-100 as the hub serves it: the API's answers for `main` and each pair's folder at
    `OPUS_COMMIT` (with each file's SHA-256 as its LFS object id), and the shards. en-fr comes in
    two train shards; each pair also has validation and test shards, which are not read."""
    repo = f"{sources.HF}/{sources.OPUS_REPO}"
    api = f"{sources.HF_API}/{sources.OPUS_REPO}"
    pairs = sorted({"-".join(sorted(p)) for p in TRAIN_PAIRS} | set(OPUS_SIDE.values()))
    siblings = []
    for pair in pairs:
        a, b = pair.split("-")
        rows = list(zip(texts[a], texts[b], strict=True))
        cut = len(rows) // 2 if pair == "en-fr" else len(rows)
        shards = {"train-00000-of-00002.parquet": rows[:cut],
                  "train-00001-of-00002.parquet": rows[cut:]} if cut < len(rows) else \
            {"train-00000-of-00001.parquet": rows}
        shards |= {"validation-00000-of-00001.parquet": rows[:2],
                   "test-00000-of-00001.parquet": rows[-2:]}
        tree = []
        for name, shard_rows in shards.items():
            path = write_opus(mirror_path(root, f"{repo}/resolve/{OPUS_COMMIT}/{pair}/{name}"),
                              a, b, shard_rows)
            data = path.read_bytes()
            tree.append({"type": "file", "path": f"{pair}/{name}", "size": len(data),
                         "oid": hashlib.sha1(data).hexdigest(),
                         "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                                 "pointerSize": 134}})
        _write_json(mirror_path(root, f"{api}/tree/{OPUS_COMMIT}/{pair}"), tree)
        siblings += [{"rfilename": entry["path"]} for entry in tree]
    _write_json(mirror_path(root, f"{api}/revision/main"),
                {"id": sources.OPUS_REPO, "sha": OPUS_COMMIT, "siblings": siblings})


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
