"""Mass descriptors (cloud_hf.mass_descriptors): values against pymatgen's element masses, invariances, a layer in
vacuum, and the processor's ``mass_features``."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY
from pymatgen.core import Element, Lattice, Structure

from cloud_hf.features import get_feature
from cloud_hf.mass_descriptors import MASS_DESCRIPTOR_FEATURE, MASS_DESCRIPTORS, mass_descriptors
from cloud_hf.structures import load_cell

PROTOTYPES = [entry["snl"].structure for entry in AFLOW_PROTOTYPE_LIBRARY[5::15]]


def pymatgen_mass_descriptors(structure: Structure) -> list[float]:
    """The four descriptors from pymatgen's composition (an independent reference: atom fractions and masses)."""
    fractions = {element: amount / structure.composition.num_atoms
                 for element, amount in structure.composition.element_composition.items()}
    return [sum(share * float(element.atomic_mass) ** -0.5 for element, share in fractions.items()),
            sum(share / float(element.atomic_mass) for element, share in fractions.items()),
            sum(share for element, share in fractions.items() if element.Z < 6),
            fractions.get(Element("H"), 0.0)]


@pytest.mark.parametrize("structure", PROTOTYPES, ids=lambda s: s.composition.reduced_formula)
def test_descriptors_match_pymatgen_composition(structure):
    np.testing.assert_allclose(mass_descriptors(load_cell(structure)), pymatgen_mass_descriptors(structure),
                               rtol=1e-12)


def test_hand_values_of_lithium_hydride_and_rock_salt():
    lih = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.08), ["Li", "H"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    values = mass_descriptors(load_cell(lih))
    assert values[2:] == [1.0, 0.5]  # every atom lighter than carbon, half of them hydrogen
    assert values[0] == pytest.approx((6.941 ** -0.5 + 1.00794 ** -0.5) / 2, rel=1e-3)
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    values = mass_descriptors(load_cell(nacl))
    assert values[1] == pytest.approx((1 / 22.98977 + 1 / 35.453) / 2, rel=1e-4) and values[2:] == [0.0, 0.0]


def test_descriptors_do_not_depend_on_cell_choice_site_order_or_vacuum():
    perovskite = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                           [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    reference = mass_descriptors(load_cell(perovskite))
    reordered = Structure(perovskite.lattice, perovskite.species[::-1], perovskite.frac_coords[::-1])
    # the same atoms with 20 Å of vacuum along c: the cell descriptors refuse it, the mass descriptors do not change
    slab = Structure(Lattice.tetragonal(3.905, 23.905), perovskite.species,
                     perovskite.cart_coords / np.array([3.905, 3.905, 23.905]))
    for variant in (perovskite * (2, 1, 3), reordered, slab):
        np.testing.assert_allclose(mass_descriptors(load_cell(variant)), reference, rtol=1e-12)
    assert MASS_DESCRIPTOR_FEATURE.check is None


def test_registered_as_a_structure_feature_and_computed_by_the_processor(canonical_tokenizer):
    from cloud_hf.processing_cloud import CloudProcessor

    feature = get_feature("mass_descriptors")
    assert feature is MASS_DESCRIPTOR_FEATURE and feature.value_names == MASS_DESCRIPTORS
    processor = CloudProcessor(canonical_tokenizer, scope=canonical_tokenizer.scope_config,
                               structure_features=["mass_descriptors"])
    quartz = Structure.from_spacegroup("P3_221", Lattice.hexagonal(4.913, 5.405), ["Si", "O"],
                                       [[0.4697, 0, 0], [0.4135, 0.2669, 0.1191]])
    batch = processor([quartz], return_tensors="pt")
    np.testing.assert_allclose(batch["mass_features"][0].double().numpy(), pymatgen_mass_descriptors(quartz),
                               rtol=1e-6)
