"""Row ids: what `row_ids` writes, `row_id_numbers` reads back as the 64-bit numbers the
accounting and the monitor compare (8 bytes an id, not 20)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from datasets import row_id, row_id_numbers, row_ids


def test_the_numbers_are_what_the_ids_spell_in_hex_across_chunks_and_slices():
    ids = row_ids("adult", "2024-01-01", "day.csv", np.arange(2, 1_002))
    numbers = row_id_numbers(pa.chunked_array([ids[:7], ids[7:500], ids[500:]]))
    assert [format(int(n), "016x") for n in numbers] == ids.to_pylist()
    assert row_id_numbers(ids.slice(3, 5)).tolist() == numbers[3:8].tolist()
    assert len(set(numbers.tolist())) == len(ids)


def test_a_whole_file_rejects_id_is_a_number_too():
    key = row_id("adult", "2024-01-01", "day.csv", "file-0")
    assert row_id_numbers(pa.array([key])).tolist() == [int(key, 16)]


def test_ids_of_another_shape_have_no_numbers():
    for other in (["x", "y"], ["ABCDEF0123456789"], ["0123456789abcdef0"], [None]):
        assert row_id_numbers(pa.array(other, pa.string())) is None
    assert row_id_numbers(pa.array(["0123456789abcdef"], pa.large_string())).tolist() == [
        0x0123456789ABCDEF
    ]
    assert row_id_numbers(pa.chunked_array([], pa.string())).tolist() == []
