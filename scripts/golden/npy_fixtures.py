#!/usr/bin/python3
"""Golden .npy files written by NumPy itself, for npy's reader tests.

Each file holds the values 0..n-1 (scaled for floats) in a known shape, so the
Go test checks dtype, byte order, Fortran order and shape handling against
what numpy really writes. Regenerate with `/usr/bin/python3
scripts/golden/npy_fixtures.py` (or `make golden`).
"""
import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "npy", "testdata")


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = []

    def save(name, arr):
        np.save(os.path.join(OUT, name + ".npy"), arr)
        c = np.ascontiguousarray(arr)
        cases.append({"file": name + ".npy", "shape": list(arr.shape), "descr": arr.dtype.str,
                      "values": [float(v) for v in c.ravel()]})

    base = np.arange(12).reshape(3, 4)
    save("f4", (base * 0.25).astype("<f4"))
    save("f8", (base / 3.0).astype("<f8"))
    save("f4_big_endian", (base * 0.25).astype(">f4"))
    save("f4_fortran", np.asfortranarray((base * 0.5).astype("<f4")))
    save("u1", base.astype("u1"))
    save("i4", (base - 6).astype("<i4"))
    save("i8", (base - 6).astype("<i8"))
    save("bool", (base % 2 == 0))
    save("f4_1d", np.linspace(0, 1, 5).astype("<f4"))
    save("f4_3d", np.arange(24).reshape(2, 3, 4).astype("<f4"))
    with open(os.path.join(OUT, "npy_fixtures.json"), "w") as f:
        json.dump({"generator": "scripts/golden/npy_fixtures.py", "numpy": np.__version__, "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
