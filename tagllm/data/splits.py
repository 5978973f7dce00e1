"""Deterministic splits: random, and by Bemis-Murcko scaffold (`scaffold_split`)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def random_split(frame: pd.DataFrame, test_fraction: float, seed: int
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shuffle with `seed` and cut off `test_fraction` (at least one row each side)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if len(frame) < 2:
        raise ValueError(f"need at least 2 rows to split, got {len(frame)}")
    order = np.random.default_rng(seed).permutation(len(frame))
    n_test = min(max(1, round(len(frame) * test_fraction)), len(frame) - 1)
    test = frame.iloc[np.sort(order[:n_test])].reset_index(drop=True)
    train = frame.iloc[np.sort(order[n_test:])].reset_index(drop=True)
    return train, test


def subsample(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """At most `max_rows` rows, drawn with `seed` and kept in their original order."""
    if max_rows is None or max_rows <= 0 or len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[keep].reset_index(drop=True)


def murcko_scaffold(smiles: str) -> str:
    """The Bemis-Murcko scaffold of a molecule as canonical SMILES (ring systems and the linkers
    between them, side chains removed; atoms and bonds as they are, chirality dropped, as chemprop
    does); "" for an acyclic molecule."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    molecule = Chem.MolFromSmiles(smiles)
    if molecule is None:
        raise ValueError(f"cannot compute the scaffold of {smiles!r}: RDKit cannot parse it")
    return MurckoScaffold.MurckoScaffoldSmiles(mol=molecule, includeChirality=False)


def scaffold_split(frame: pd.DataFrame, smiles_column: str, test_fraction: float, seed: int
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test with no Bemis-Murcko scaffold on both sides (molecules of `smiles_column`).

    chemprop's balanced scaffold split: scaffold groups larger than half the test size are placed
    first, then the smaller ones, each part in an order shuffled with `seed`; each group goes to
    train if train stays within `1 - test_fraction` of the rows, else to test. The test fraction is
    therefore approximate. Acyclic molecules share the scaffold "". At least one row each side:
    needs two or more scaffolds."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if len(frame) < 2:
        raise ValueError(f"need at least 2 rows to split, got {len(frame)}")
    groups: dict[str, list[int]] = {}  # scaffold -> positions, in order of first appearance
    for position, smiles in enumerate(frame[smiles_column]):
        groups.setdefault(murcko_scaffold(smiles), []).append(position)
    if len(groups) < 2:
        scaffold = next(iter(groups)) or "none: acyclic"
        raise ValueError(f"all {len(frame)} molecules share one scaffold ({scaffold}); a scaffold "
                         "split needs two or more")
    n_test = min(max(1, round(len(frame) * test_fraction)), len(frame) - 1)
    n_train = len(frame) - n_test
    rng = np.random.default_rng(seed)
    big = [g for g in groups.values() if len(g) > n_test / 2]
    small = [g for g in groups.values() if len(g) <= n_test / 2]
    ordered = [part[i] for part in (big, small) for i in rng.permutation(len(part))]
    train: list[int] = []
    test: list[int] = []
    for group in ordered:
        (train if len(train) + len(group) <= n_train else test).extend(group)
    if not train:  # every group is larger than the train share (test_fraction above 0.5)
        train = min(ordered, key=len)
        test = sorted(set(test) - set(train))
    return (frame.iloc[np.sort(train)].reset_index(drop=True),
            frame.iloc[np.sort(test)].reset_index(drop=True))
