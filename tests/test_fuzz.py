"""Every reader of outside files returns valid data or raises its documented error type.

A short, deterministic fuzz run over the targets of tests/fuzz_targets.py (corrupted valid files and
structurally random inputs); `python benchmarks/fuzz.py` is the long run with the same properties.
Below it, regression tests for the bugs the fuzzing found, each with the smallest input that showed it.
"""

from __future__ import annotations

import struct
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from safetensors.torch import save_file

from fuzz_targets import REAL_DATA, TARGETS, Target, Undocumented, run_one
from velora.data.labels import read_label_file
from velora.errors import CheckpointError, DataError
from velora.events.aedat4 import MAGIC, read_aedat4
from velora.events.readers import read_hdf5, read_npy
from velora.model.adapter_file import FORMAT, read_adapters
from velora.model.weights import WeightsError, load_state_dict_any

EXAMPLES_PER_READER = 80  # about a second or two per reader on one core


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TARGETS))
def test_reader_returns_valid_data_or_its_documented_error(name, tmp_path):
    target = TARGETS[name]

    @settings(
        max_examples=EXAMPLES_PER_READER,
        derandomize=True,  # the same inputs on every run and machine
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(fuzz_input=target.inputs())
    def read(fuzz_input):
        run_one(target, tmp_path, fuzz_input.data)

    read()


def test_the_property_fails_on_an_undocumented_error_or_invalid_data(tmp_path):
    def read_with_index_error(folder, data):
        return folder, data[len(data)]  # IndexError, as a reader that trusts a length field would raise

    crashing = Target("crashing", read_with_index_error, lambda result: None, (DataError,), lambda: None)
    with pytest.raises(Undocumented, match="undocumented IndexError"):
        run_one(crashing, tmp_path, b"abc")

    def read_unchecked(folder, data):
        return folder, SimpleNamespace(t=np.array([2, 1]))  # what a reader without validation would return

    def check_sorted(result):
        assert np.all(result.t[1:] >= result.t[:-1]), "timestamps are not sorted"

    unsorted = Target("unsorted", read_unchecked, check_sorted, (DataError,), lambda: None)
    with pytest.raises(Undocumented, match="returned invalid data: timestamps are not sorted"):
        run_one(unsorted, tmp_path, b"")


# --- regressions found by fuzzing ----------------------------------------------------------------------


def test_aedat4_header_whose_stream_description_is_not_utf8_raises(tmp_path):
    """aedat reads the description without checking it; invalid UTF-8 there aborted the interpreter."""
    data = bytearray((REAL_DATA / "davis346" / "street_davis346.aedat4").read_bytes())
    (header_size,) = struct.unpack_from("<i", data, len(MAGIC))
    start = data.index(b"<dv", len(MAGIC), len(MAGIC) + 4 + header_size)
    data[start + 1] = 0xFF
    path = tmp_path / "bad_description.aedat4"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="not UTF-8") as caught:
        read_aedat4(path)
    assert str(path) in str(caught.value)


def test_label_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "train_label.txt"
    path.write_bytes(b"a/b 3 0\nc/\xff 3 1\n")
    with pytest.raises(DataError, match=r"line 2: not UTF-8"):
        read_label_file(path)


def test_hdf5_declaring_a_huge_dataset_is_refused_before_allocating_it(tmp_path):
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as file:
        for name in "txyp":  # 8 TB declared, never written: reading would allocate all of it
            file.create_dataset(name, shape=(10**12,), dtype="i8", chunks=(1024,))
    with pytest.raises(DataError, match="declare 32000000000000 bytes"):
        read_hdf5(path)


def test_hdf5_dataset_name_that_is_not_utf8_is_listed_escaped(tmp_path):
    path = tmp_path / "events.h5"
    with h5py.File(path, "w") as file:  # found by the fuzzer: sorting the names raised TypeError
        for name in (b"p\xe0", b"t", b"x", b"y"):
            file.create_dataset(name, data=np.zeros(2))
    with pytest.raises(DataError) as exc:
        read_hdf5(path)
    assert str(exc.value) == (
        f"{path}: no dataset (in /) named 'p' / 'polarity' / 'polarities' / 'pol' / 'on'; "
        "the file has ['p\\\\xe0', 't', 'x', 'y']. Store the events as columns t, x, y, p."
    )


def test_weights_whose_patch_embedding_has_no_width_raise_weights_error(tmp_path):
    path = tmp_path / "vit.safetensors"  # found by the fuzzer: the MLP ratio divided by the width 0
    tensors = {"patch_embed.proj.weight": torch.zeros(0, 3, 4, 4), "pos_embed": torch.zeros(1, 5, 0)}
    save_file({**tensors, "blocks.0.mlp.fc1.weight": torch.zeros(6, 0)}, str(path))
    with pytest.raises(WeightsError) as exc:
        load_state_dict_any(path)
    assert str(exc.value) == (
        f"'{path}': the tensors do not have the shapes of a ViT (ZeroDivisionError: division by zero)"
    )


def test_npy_with_a_broken_header_and_non_finite_floats_raise(tmp_path):
    path = tmp_path / "events.npy"
    np.save(path, np.zeros(2, dtype=[("t", "<f8"), ("x", "<i2"), ("y", "<i2"), ("p", "?")]))
    data = path.read_bytes()
    path.write_bytes(data.replace(b"'shape': (2,)", b"'shape': (2, "))  # tokenize.TokenError inside numpy
    with pytest.raises(DataError, match="cannot be read as a NumPy file"):
        read_npy(path, width=4, height=4)
    table = np.zeros(2, dtype=[("t", "<f8"), ("x", "<i2"), ("y", "<i2"), ("p", "?")])
    table["t"] = [0.0, np.inf]  # cast to int64 it became garbage timestamps
    np.save(path, table)
    with pytest.raises(DataError, match="non-finite"):
        read_npy(path, width=4, height=4)


@pytest.mark.parametrize("metadata", [{"config": "{not json"}, {"config": "[]"}, {"class_names": '"abc"'}])
def test_adapter_checkpoint_with_corrupt_metadata_raises(tmp_path, metadata):
    path = tmp_path / "adapters.safetensors"
    save_file({"head.weight": torch.zeros(2)}, str(path), metadata={"format": FORMAT, "config": "{}", **metadata})
    with pytest.raises(CheckpointError, match="corrupt metadata"):
        read_adapters(path)


def test_pth_whose_zip_directory_zipfile_cannot_read_raises_weights_error(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save({"pos_embed": torch.zeros(1, 2, 4)}, path)
    data = bytearray(path.read_bytes())
    data[data.index(b"PK\x01\x02") + 6] = 255  # "version needed to extract": zipfile raised NotImplementedError
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="not a ViT checkpoint"):  # torch's own zip reader reads it
        load_state_dict_any(path)
