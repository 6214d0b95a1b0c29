"""Write the example CIFs in ``examples/`` from crystal structures that pymatgen ships.

Run from the repository root::

    python scripts/make_examples.py

The structures come from ``pymatgen/util/structures/*.json`` (pymatgen's own test structures), so the
examples need no download and carry no third-party data. Output is deterministic: re-running the script
rewrites the same files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pymatgen.util
from pymatgen.core import Structure
from pymatgen.io.cif import CifWriter

PYMATGEN_STRUCTURES = Path(pymatgen.util.__file__).parent / "structures"

# pymatgen structure file -> example file name (ordered, periodic crystals of varied symmetry and size)
EXAMPLES = {
    "Si.json": "Si_diamond.cif",
    "CsCl.json": "CsCl.cif",
    "Li2O.json": "Li2O_antifluorite.cif",
    "SrTiO3.json": "SrTiO3_perovskite.cif",
    "VO2.json": "VO2_rutile.cif",
    "SiO2.json": "SiO2_quartz.cif",
    "LiFePO4.json": "LiFePO4_olivine.cif",
}


def write_examples(output_dir: Path) -> list[Path]:
    """Write one CIF per entry of ``EXAMPLES`` into ``output_dir``; returns the written paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source_name, target_name in EXAMPLES.items():
        shipped = Structure.from_file(PYMATGEN_STRUCTURES / source_name)
        shipped.remove_oxidation_states()  # plain element symbols, as most CIFs in the wild carry
        structure = Structure(shipped.lattice, shipped.species, shipped.frac_coords)  # fresh site labels
        target = output_dir / target_name
        CifWriter(structure, symprec=None).write_file(target)
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parents[1] / "examples")
    args = parser.parse_args()
    for path in write_examples(args.output_dir):
        print(path)


if __name__ == "__main__":
    main()
