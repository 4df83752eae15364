#!/usr/bin/env python3
"""Writes the npy fixtures of tests/test_datasets.c with numpy (run from this directory).

They check that ember reads what numpy itself writes: f32, i32 and i64 arrays of
1 to 3 dimensions and a 0-d scalar, plus three files ember must refuse with a clear
status: big-endian data (EMBER_ERR_UNSUPPORTED), a dtype it does not handle
(f8, EMBER_ERR_DTYPE) and Fortran order (EMBER_ERR_UNSUPPORTED).
"""
import numpy as np

np.save('f32_2x3.npy', np.arange(6, dtype='<f4').reshape(2, 3) / 4)
np.save('i32_5.npy', np.array([1, -2, 3, -4, 2**31 - 1], dtype='<i4'))
np.save('i64_2x2x2.npy', np.arange(8, dtype='<i8').reshape(2, 2, 2) - 3)
np.save('i32_be.npy', np.arange(4, dtype='>i4'))
np.save('f64_3.npy', np.arange(3, dtype='<f8'))
np.save('f32_fortran.npy', np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3)))
np.save('u1_scalar.npy', np.array(7, dtype='u1'))
