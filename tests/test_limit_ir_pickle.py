"""The limit's symbol registry does not keep derivations alive (leak test)."""
import gc
import pathlib
import weakref

import numpy as np

import tensorprog
from tensorprog.limit import symbols
from tensorprog.limit.symbols import Data

NTK = pathlib.Path(__file__).resolve().parent.parent / "examples" / "mlp_ntk.tp"


def test_derives_leave_no_atoms_quantities_or_data_alive():
    gc.collect()
    before = (len(symbols._ATOMS), len(symbols._QUANTS))
    limit = tensorprog.derive(NTK)
    alive = (len(symbols._ATOMS), len(symbols._QUANTS))
    assert alive[0] > before[0] and alive[1] > before[1]   # the registry does see a live derivation
    arrays = [weakref.ref(q.definition.array) for q in limit.quantities
              if isinstance(q.definition, Data) and isinstance(q.definition.array, np.ndarray)]
    assert arrays
    del limit
    for _ in range(20):
        tensorprog.derive(NTK)
    gc.collect()
    assert (len(symbols._ATOMS), len(symbols._QUANTS)) == before
    assert all(r() is None for r in arrays)   # the data arrays of a dropped derivation are freed
