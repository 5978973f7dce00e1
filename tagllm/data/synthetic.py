"""Synthetic drug-combination (DC) and binding-affinity (BA) pairs for the embedded default.

No installed package ships drug-combination or binding-affinity measurements, so the embedded default
builds pairs from its real molecules and proteins and scores them with a documented, deterministic
formula. Everything made here is named `*_synthetic` (files, tables, README); its numbers say whether
the pipeline learns a function of both inputs, not anything about biology.

    dc_synthetic  = 25 (QED_a + QED_b) + 15 Tanimoto(a, b) + 3 |logP_a - logP_b|
    ba_synthetic  = 6 + 1.5 QED_m + 2 BLOSUM1_p + 0.8 GRAVY_p * clip(logP_m / 5, -1, 1)

(QED and Crippen logP from RDKit; Tanimoto on 2048-bit Morgan fingerprints of radius 2; BLOSUM1 and
the Kyte-Doolittle hydrophobicity (GRAVY) from `peptides`.) Both scores are symmetric in what they
should be and depend on both members of the pair, the BA score through an interaction term.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import peptides
from rdkit import Chem, DataStructs
from rdkit.Chem import QED, Crippen, rdFingerprintGenerator


def molecule_features(smiles: pd.Series) -> pd.DataFrame:
    """QED, logP and a Morgan fingerprint per SMILES."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    rows = []
    for value in smiles:
        molecule = Chem.MolFromSmiles(value)
        if molecule is None:
            raise ValueError(f"invalid SMILES in synthetic pair source: {value!r}")
        rows.append({"qed": QED.qed(molecule), "logp": Crippen.MolLogP(molecule),
                     "fingerprint": generator.GetFingerprint(molecule)})
    return pd.DataFrame(rows)


def dc_score(a: pd.Series, b: pd.Series) -> float:
    similarity = DataStructs.TanimotoSimilarity(a["fingerprint"], b["fingerprint"])
    return 25 * (a["qed"] + b["qed"]) + 15 * similarity + 3 * abs(a["logp"] - b["logp"])


def ba_score(molecule: pd.Series, sequence: str) -> float:
    protein = peptides.Peptide(sequence)
    blosum1 = protein.blosum_indices().blosum1
    gravy = protein.hydrophobicity("KyteDoolittle")
    return 6 + 1.5 * molecule["qed"] + 2 * blosum1 + 0.8 * gravy * float(
        np.clip(molecule["logp"] / 5, -1, 1))


def dc_pairs(molecules: pd.DataFrame, n_pairs: int, seed: int) -> pd.DataFrame:
    """`n_pairs` distinct unordered molecule pairs with their synthetic DC score."""
    if len(molecules) < 2:
        raise ValueError("need at least two molecules to make drug pairs")
    features = molecule_features(molecules["smiles"])
    rng = np.random.default_rng(seed)
    limit = len(molecules) * (len(molecules) - 1) // 2
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < min(n_pairs, limit):
        i, j = sorted(rng.choice(len(molecules), size=2, replace=False).tolist())
        chosen.add((i, j))
    rows = []
    for i, j in sorted(chosen):
        a, b = molecules.iloc[i], molecules.iloc[j]
        rows.append({"drug1": f"NCI-{a['id']}", "smiles1": a["smiles"],
                     "drug2": f"NCI-{b['id']}", "smiles2": b["smiles"],
                     "y": dc_score(features.iloc[i], features.iloc[j])})
    return pd.DataFrame(rows)


def ba_pairs(molecules: pd.DataFrame, proteins: pd.DataFrame, n_pairs: int, seed: int
             ) -> pd.DataFrame:
    """`n_pairs` distinct (protein, molecule) pairs with their synthetic BA score."""
    if molecules.empty or proteins.empty:
        raise ValueError("need molecules and proteins to make binding pairs")
    features = molecule_features(molecules["smiles"])
    rng = np.random.default_rng(seed)
    limit = len(molecules) * len(proteins)
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < min(n_pairs, limit):
        chosen.add((int(rng.integers(len(proteins))), int(rng.integers(len(molecules)))))
    rows = []
    for p, m in sorted(chosen):
        protein, molecule = proteins.iloc[p], molecules.iloc[m]
        rows.append({"protein_id": protein["id"], "sequence": protein["sequence"],
                     "drug": f"NCI-{molecule['id']}", "smiles": molecule["smiles"],
                     "y": ba_score(features.iloc[m], protein["sequence"])})
    return pd.DataFrame(rows)
