"""velora split: a validation split stratified by class, deterministic, disjoint from test, never
overwriting; and training without a validation list stops before any work, saying how to make one."""

from __future__ import annotations

from collections import Counter

import pytest

from conftest import make_tiny_config
from velora.cli import main
from velora.data.labels import read_label_file
from velora.data.split import split_train_val
from velora.errors import DataError
from velora.training.run import train


def write_lists(root, per_class=(20, 10, 3, 1), test_overlap=("c0/s000",)):
    root.mkdir(parents=True, exist_ok=True)
    train_lines = [f"c{c}/s{i:03d} 8 {c}" for c, n in enumerate(per_class) for i in range(n)]
    test_lines = [f"c{c}/t{i:03d} 8 {c}" for c in range(len(per_class)) for i in range(2)]
    test_lines += [f"{s} 8 0" for s in test_overlap]
    (root / "train_label.txt").write_text("# sample frames label\n" + "\n".join(train_lines) + "\n")
    (root / "test_label.txt").write_text("\n".join(test_lines) + "\n")
    return train_lines


def test_split_is_stratified_and_leaves_the_inputs_alone(tmp_path):
    write_lists(tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in ("train_label.txt", "test_label.txt")}
    result = split_train_val(tmp_path, val_fraction=0.1, seed=0)
    val, rest = read_label_file(result.val_file), read_label_file(result.train_file)
    # 10 % of each class, at least one when the class has two or more, never the whole class.
    # Class 0: 20 listed, one of them also in the test list, so 19 -> 2 val.
    assert Counter(e.label for e in val) == {0: 2, 1: 1, 2: 1}
    assert Counter(e.label for e in rest) == {0: 17, 1: 9, 2: 2, 3: 1}
    assert result.counts == {"0": (17, 2), "1": (9, 1), "2": (2, 1), "3": (1, 0)}
    assert {name: (tmp_path / name).read_bytes() for name in before} == before


def test_split_is_deterministic_and_the_seed_changes_it(tmp_path):
    write_lists(tmp_path / "a"), write_lists(tmp_path / "b")
    first = split_train_val(tmp_path / "a", seed=3).val_file.read_text()
    again = split_train_val(tmp_path / "b", seed=3).val_file.read_text()
    assert first == again
    other = split_train_val(tmp_path / "b", seed=4, force=True).val_file.read_text()
    assert other != first


def test_split_never_overlaps_test_or_its_own_halves(tmp_path):
    listed = write_lists(tmp_path, test_overlap=("c0/s000", "c1/s004"))
    result = split_train_val(tmp_path, val_fraction=0.3)
    val = {e.sample for e in read_label_file(result.val_file)}
    rest = {e.sample for e in read_label_file(result.train_file)}
    test = {e.sample for e in read_label_file(tmp_path / "test_label.txt")}
    assert not val & test and not rest & test and not val & rest
    assert val | rest | {"c0/s000", "c1/s004"} == {line.split()[0] for line in listed}
    assert result.left_out == ["c0/s000", "c1/s004"]


def test_split_refuses_to_overwrite_without_force(tmp_path, capsys):
    write_lists(tmp_path)
    assert main(["split", str(tmp_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    written = (tmp_path / "val_label.txt").read_text()
    assert main(["split", str(tmp_path), "--seed", "9"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (tmp_path / "val_label.txt").read_text() == written
    assert main(["split", str(tmp_path), "--seed", "9", "--force"]) == 0
    with pytest.raises(DataError, match="does not exist"):
        split_train_val(tmp_path / "nowhere")


def test_split_can_write_outside_a_read_only_dataset(tmp_path, capsys):
    root, out = tmp_path / "data", tmp_path / "lists"
    write_lists(root)
    assert main(["split", str(root), "--output", str(out)]) == 0
    assert sorted(p.name for p in root.iterdir()) == ["test_label.txt", "train_label.txt"]
    in_root = split_train_val(tmp_path / "data", seed=0)  # the same split, written into the dataset
    for name in ("val_label.txt", "train_split_label.txt"):
        assert [e.sample for e in read_label_file(out / name)] == [e.sample for e in read_label_file(root / name)]
    assert in_root.val_file == root / "val_label.txt"
    assert main(["split", str(root), "--output", str(out), "--from-folders"]) == 2


def test_split_reads_event_label_files_too(tmp_path):
    (tmp_path / "train_label.txt").write_text("".join(f"{i}\t{i % 3}\n" for i in range(30)))
    result = split_train_val(tmp_path, val_fraction=0.2)
    assert result.counts == {"0": (8, 2), "1": (8, 2), "2": (8, 2)}
    assert all("\t" in line for line in result.val_file.read_text().splitlines()[1:])


def test_training_without_a_validation_list_stops_first_and_names_the_command(tiny_dataset, tmp_path):
    cfg = make_tiny_config(
        data={"root": str(tiny_dataset), "val_labels": "missing_val_label.txt"},
        train={"output_dir": str(tmp_path / "run")},
    )
    with pytest.raises(DataError, match=r"missing_val_label.txt \(data.val_labels\) does not exist") as error:
        train(cfg)
    assert f"velora split {tiny_dataset} --val-fraction 0.1" in str(error.value)
    assert not (tmp_path / "run" / "checkpoints").exists()
