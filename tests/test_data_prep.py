"""data_prep: every preparer end to end on small copies of the raw layouts, and bad input."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import pathlib
import pickle
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from a2hlib.manifest import DatasetError, read_dataset
from data_prep import PREPARERS, common
from data_prep.__main__ import main
try:
    from tests import layouts
except ImportError:  # pytest run from elsewhere: tests/ itself is on sys.path
    import layouts

REPO = pathlib.Path(__file__).resolve().parents[1]
# the fake CIFAR-10 files differ from the official md5, so --no-verify
EXTRA = {"cifar10": ["--query-per-class", "1", "--no-verify"]}
DEBIAN_FASHION = pathlib.Path("/usr/share/datasets/fashion-mnist")


def run(capsys, name, root, out, *extra):
    rc = main([name, "--root", str(root), "--out", str(out), *EXTRA.get(name, []), *extra])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def fails(capsys, name, root, out, *extra):
    """Run a preparer that must fail: exit 1 and exactly one 'error:' line, the last line."""
    rc, _, err = run(capsys, name, root, out, *extra)
    assert rc == 1, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert [line for line in lines if line.startswith("error:")] == lines[-1:]
    assert " — " in lines[-1]  # says what to do
    return lines[-1]


def snapshot(folder: pathlib.Path):
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def compare(frame: pd.DataFrame, expected: pd.DataFrame, columns=None):
    columns = columns or list(expected.columns)
    got = frame.drop(columns="index")[columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected[columns].reset_index(drop=True), check_dtype=False)


# ---------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("name", ["nabirds", "aircraft", "food101", "vegfru", "stanford_dogs",
                                  "nuswide"])
def test_preparer_writes_the_expected_manifest(name, tmp_path, capsys):
    lay = layouts.BUILDERS[name](tmp_path)
    rc, out, err = run(capsys, name, lay.root, tmp_path / "out")
    assert rc == 0, err
    ds = read_dataset(tmp_path / "out")
    assert list(ds.frame.columns) == ["index", *lay.expected.columns]
    compare(ds.frame, lay.expected)
    assert ds.name == name and ds.class_names == lay.class_names
    assert ds.info["image_root"] == str(lay.base.resolve())
    assert all(ds.image_path(i).is_file() for i in range(len(ds.frame)))
    counts = lay.expected["split"].value_counts().to_dict()
    assert ds.counts == {s: counts.get(s, 0) for s in ("database", "query", "val")}
    assert ds.info["count_differences"] and "official" in ds.info["count_differences"][0]
    assert f"warning: {name}: differs from the official dataset" in err
    assert f"wrote {tmp_path / 'out'}: database {ds.counts['database']}" in out
    assert ds.info["skipped"] == [] and ds.info["created_by"] == f"python -m data_prep {name}"


def test_cub_writes_attributes_parts_and_boxes(tmp_path, capsys):
    lay = layouts.cub(tmp_path)
    rc, _, err = run(capsys, "cub200", lay.root, tmp_path / "out")
    assert rc == 0, err
    ds = read_dataset(tmp_path / "out")
    compare(ds.frame, lay.expected)
    assert ds.class_names == ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross"]
    assert ds.info["attribute_names"] == layouts.CUB_ATTRIBUTES
    assert ds.info["part_names"] == layouts.CUB_PARTS
    np.testing.assert_array_equal(ds.attributes()["present"], lay.extra["present"])
    np.testing.assert_array_equal(ds.attributes()["certainty"], lay.extra["certainty"])
    np.testing.assert_array_equal(ds.parts()["xyv"], lay.extra["xyv"])
    assert "attributes: 4, official 312" in ds.info["count_differences"]
    # --root may also be the CUB_200_2011 folder itself; attributes.txt is found in its parent
    rc, _, _ = run(capsys, "cub200", lay.base, tmp_path / "out2", "--no-parts")
    assert rc == 0 and not (tmp_path / "out2" / "parts.npz").exists()
    assert read_dataset(tmp_path / "out2").attributes() is not None


def test_cub_skip_bad_drops_entries_and_keeps_arrays_aligned(tmp_path, capsys):
    lay = layouts.cub(tmp_path)
    (lay.base / "images" / lay.expected.path[1][len("images/"):]).unlink()  # image id 2
    labels = lay.base / "image_class_labels.txt"
    lines = labels.read_text().splitlines()
    lines[4] = "5"  # image 5: malformed line, so no label
    labels.write_text("\n".join(lines) + "\n")
    attrs = lay.base / "attributes" / "image_attribute_labels.txt"
    lines = attrs.read_text().splitlines()
    lines[10] = "3 3 1"  # fewer than four fields: that annotation is dropped (certainty 0)
    attrs.write_text("\n".join(lines) + "\n")
    rc, out, err = run(capsys, "cub200", lay.root, tmp_path / "out", "--skip-bad")
    assert rc == 0, err
    ds = read_dataset(tmp_path / "out")
    keep = [i for i in range(12) if i not in (1, 4)]
    compare(ds.frame, lay.expected.iloc[keep])
    skipped = ds.info["skipped"]
    assert ds.info["skipped_count"] == 4 == len(skipped)
    assert {(pathlib.Path(s["file"]).name, s["line"]) for s in skipped} == {
        ("image_class_labels.txt", 5), ("image_attribute_labels.txt", 11),
        ("images.txt", 5), ("images.txt", 2)}
    assert any("not found" in s["reason"] for s in skipped)
    assert "skipped 4 bad entries" in out and "image_attribute_labels.txt:11:" in out
    present, certainty = lay.extra["present"][keep], lay.extra["certainty"][keep]
    certainty[1, 2] = 0  # image 3 (row 1 after dropping image 2), attribute 3: no valid line
    present[1, 2] = 0
    np.testing.assert_array_equal(ds.attributes()["present"], present)
    np.testing.assert_array_equal(ds.attributes()["certainty"], certainty)
    np.testing.assert_array_equal(ds.parts()["xyv"], lay.extra["xyv"][keep])
    assert any("attribute annotations" in d for d in ds.info["count_differences"])


def test_cifar10_lineage_protocol_and_extracted_pngs(tmp_path, capsys):
    lay = layouts.cifar10(tmp_path, per_class_per_batch=2)
    rc, _, err = run(capsys, "cifar10", lay.root, tmp_path / "a", "--query-per-class", "3")
    assert rc == 0, err
    assert "md5 of batches.meta, data_batch_1" in err
    ds = read_dataset(tmp_path / "a")
    compare(ds.frame, lay.expected, ["path", "label", "source_id"])
    assert ds.info["image_root"] == "." and ds.image_root == (tmp_path / "a").resolve()
    query = ds.frame[ds.frame.split == "query"]
    assert query.label.value_counts().to_dict() == {c: 3 for c in range(10)}
    assert ds.counts == {"database": 90, "query": 30, "val": 0}
    for i in (0, 57, 119):
        np.testing.assert_array_equal(np.asarray(Image.open(ds.image_path(i))), lay.extra["pixels"][i])
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["dataset.json", "images",
                                                                   "manifest.csv"]
    assert ds.info["checksum_differences"][0] == "batches.meta"
    # the draw depends on the seed only
    assert run(capsys, "cifar10", lay.root, tmp_path / "b", "--query-per-class", "3")[0] == 0
    assert run(capsys, "cifar10", lay.root, tmp_path / "c", "--query-per-class", "3",
               "--seed", "5")[0] == 0
    split = {k: read_dataset(tmp_path / k).frame.split.tolist() for k in "abc"}
    assert split["a"] == split["b"] != split["c"]
    line = fails(capsys, "cifar10", lay.root, tmp_path / "d", "--query-per-class", "12")
    assert "class 0 (airplane) has 12 images" in line and "--query-per-class" in line


def test_fashion_mnist_from_idx_files(tmp_path, capsys):
    lay = layouts.fashion_mnist(tmp_path)
    rc, _, err = run(capsys, "fashion_mnist", lay.root, tmp_path / "out")
    assert rc == 0, err
    ds = read_dataset(tmp_path / "out")
    compare(ds.frame, lay.expected)
    assert ds.class_names[0] == "T-shirt/top" and ds.num_classes == 10
    img = Image.open(ds.image_path(13))
    assert img.mode == "L"
    np.testing.assert_array_equal(np.asarray(img), lay.extra["pixels"]["t10k"][1])
    # uncompressed files work too; --limit keeps the first N per split
    plain = layouts.fashion_mnist(tmp_path / "plain", gz=False)
    rc, _, err = run(capsys, "fashion_mnist", plain.root, tmp_path / "lim", "--limit", "3")
    assert rc == 0
    assert read_dataset(tmp_path / "lim").frame.source_id.tolist() == [
        "train:0", "train:1", "train:2", "t10k:0", "t10k:1", "t10k:2"]
    assert "--limit 3 kept at most 3 images per split" in err


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir() and not os.environ.get("A2H_REQUIRE_FASHION_MNIST"),
                    reason="Debian package dataset-fashion-mnist is not installed (CI requires it)")
def test_real_fashion_mnist_with_a_limit(tmp_path, capsys):
    rc = main(["fashion_mnist", "--out", str(tmp_path / "fm"), "--limit", "300"])  # default root
    assert rc == 0, capsys.readouterr().err
    ds = read_dataset(tmp_path / "fm")
    assert ds.counts == {"database": 300, "query": 300, "val": 0}
    assert ds.frame.label.iloc[:5].tolist() == [9, 0, 0, 3, 0]  # the known first train labels
    assert ds.frame.label.iloc[300:305].tolist() == [9, 2, 1, 1, 6]  # the known first test labels
    assert sorted(ds.frame.label.iloc[:300].unique()) == list(range(10))
    assert Image.open(ds.image_path(0)).size == (28, 28)


def test_val_fraction_carves_from_the_database(tmp_path, capsys):
    lay = layouts.food101(tmp_path, per_class=5)  # 4 database images per class
    rc, _, _ = run(capsys, "food101", lay.root, tmp_path / "a", "--val-fraction", "0.5",
                   "--seed", "1")
    assert rc == 0
    ds = read_dataset(tmp_path / "a")
    assert ds.counts == {"database": 6, "query": 3, "val": 6}
    assert ds.frame[ds.frame.split == "val"].label.value_counts().to_dict() == {0: 2, 1: 2, 2: 2}
    assert ds.info["val_fraction"] == 0.5 and ds.info["seed"] == 1
    # official counts are compared before carving
    assert "database: 12 images, official 75,750" in ds.info["count_differences"]


def test_vegfru_official_val_choices(tmp_path, capsys):
    lay = layouts.vegfru(tmp_path)
    rc, _, _ = run(capsys, "vegfru", lay.root, tmp_path / "a", "--official-val", "database")
    assert rc == 0 and read_dataset(tmp_path / "a").counts == {"database": 9, "query": 6, "val": 0}
    assert "database: 9 images, official 43,800" in read_dataset(tmp_path / "a").info[
        "count_differences"]
    rc, out, err = run(capsys, "vegfru", lay.root, tmp_path / "b", "--official-val", "drop",
                       "--quiet")
    assert rc == 0 and read_dataset(tmp_path / "b").counts == {"database": 6, "query": 6, "val": 0}
    assert out == "" and err.startswith("warning: vegfru: differs")  # --quiet keeps warnings


# ------------------------------------------------------------------------------------ bad input
def test_missing_root_and_list_files(tmp_path, capsys):
    line = fails(capsys, "food101", tmp_path / "nowhere", tmp_path / "out")
    assert line.startswith(f"error: {tmp_path / 'nowhere'}: raw dataset folder not found — ")
    assert "food-101.tar.gz" in line
    lay = layouts.food101(tmp_path)
    (lay.base / "meta" / "test.txt").unlink()
    line = fails(capsys, "food101", lay.root, tmp_path / "out")
    assert line.startswith(f"error: {lay.base / 'meta' / 'test.txt'}: missing file of the raw "
                           "dataset — restore it")
    empty = tmp_path / "empty"
    empty.mkdir()
    line = fails(capsys, "food101", empty, tmp_path / "out")
    assert f"{empty / 'meta/classes.txt'}: missing file" in line and "--root" in line
    cub = layouts.cub(tmp_path / "c")
    (cub.root / "attributes.txt").unlink()
    line = fails(capsys, "cub200", cub.root, tmp_path / "out")
    assert "attributes.txt" in line and "--no-attributes" in line
    dogs = layouts.stanford_dogs(tmp_path / "d")
    (dogs.base / "lists" / "test_list.mat").write_bytes(b"MATLAB 5.0 broken")
    line = fails(capsys, "stanford_dogs", dogs.root, tmp_path / "out")
    assert line.startswith(f"error: {dogs.base / 'lists' / 'test_list.mat'}: cannot read")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage, reason", [
    ("missing", "not found"),
    ("truncated_jpeg", "is truncated (no JPEG end-of-image marker)"),
    ("garbage", "is corrupt or truncated (UnidentifiedImageError"),
    ("truncated_png", "is corrupt or truncated"),
])
def test_bad_images_are_reported_with_list_file_and_line(tmp_path, capsys, damage, reason):
    lay = layouts.food101(tmp_path)
    target = lay.base / lay.expected.path[4]  # meta/train.txt line 5
    if damage == "missing":
        target.unlink()
    elif damage == "truncated_jpeg":  # headers intact, scan data cut short
        layouts.image(target, 3, size=(40, 40))
        layouts.truncate(target, 0.7)
    elif damage == "garbage":
        layouts.garbage(target)
    else:
        layouts.image(target.with_suffix(".png"), 3, size=(40, 40))
        target.with_suffix(".png").rename(target)
        layouts.truncate(target, 0.6)
    line = fails(capsys, "food101", lay.root, tmp_path / "out")
    assert line.startswith(f"error: {lay.base / 'meta' / 'train.txt'}:5: image '{target}' {reason}")
    assert line.endswith("or re-run with --skip-bad to leave it out")
    assert not (tmp_path / "out").exists()
    if damage != "missing":  # --no-verify only checks that the files exist
        assert run(capsys, "food101", lay.root, tmp_path / "nv", "--no-verify")[0] == 0
    rc, out, _ = run(capsys, "food101", lay.root, tmp_path / "skip", "--skip-bad")
    assert rc == 0 and "skipped 1 bad entries" in out
    assert read_dataset(tmp_path / "skip").counts["database"] == 5


def test_verify_modes(tmp_path):
    good, cut = tmp_path / "good.jpg", tmp_path / "cut.jpg"
    layouts.image(good, 0, size=(64, 64))
    cut.write_bytes(good.read_bytes()[:1500])
    assert [common.verify_file(good, m) for m in ("off", "fast", "full")] == [None] * 3
    assert common.verify_file(cut, "off") is None
    assert "no JPEG end-of-image marker" in common.verify_file(cut, "fast")
    assert "image file is truncated" in common.verify_file(cut, "full")
    assert common.verify_file(tmp_path / "nothing.jpg", "off") == "not found"


@pytest.mark.parametrize("name, edit, where, message", [
    ("cub200", ("image_class_labels.txt", 2, "3"), "image_class_labels.txt:3",
     "expected 2 fields, got 1: '3'"),
    ("cub200", ("attributes/image_attribute_labels.txt", 6, "2 3 1"),
     "image_attribute_labels.txt:7", "expected at least 4 fields"),
    ("cub200", ("attributes/image_attribute_labels.txt", 6, "2 3 1 7 0.5"),
     "image_attribute_labels.txt:7", "bad annotation '2 3 1 7'"),
    ("cub200", ("train_test_split.txt", 0, "1 2"), "train_test_split.txt:1",
     "bad is_training_image flag (expected 1 or 0) '2' for id 1"),
    ("cub200", ("image_class_labels.txt", 0, "1 201"), "image_class_labels.txt:1",
     "class id 201 of image 1 is not in"),
    ("cub200", ("images.txt", 1, "1 other.jpg"), "images.txt:2", "duplicate image id 1"),
    ("cub200", ("images.txt", 3, "4 ../../secret.jpg"), "images.txt:4",
     "path '../../secret.jpg' escapes the dataset root"),
    ("cub200", ("bounding_boxes.txt", 0, "1 1 2 0 4"), "bounding_boxes.txt:1", "bad bounding box"),
    ("nabirds", ("image_class_labels.txt", 0, None), "image_class_labels.txt:1",
     "class id 4242 of image"),
    ("aircraft", ("images_variant_test.txt", 1, "1000100 Boeing 999"),
     "images_variant_test.txt:2", "variant 'Boeing 999' is not in"),
    ("food101", ("meta/train.txt", 2, "../../../etc/passwd"), "meta/train.txt:3",
     "escapes the dataset root"),
    ("food101", ("meta/test.txt", 0, "pizza/123"), "meta/test.txt:1",
     "entry 'pizza/123' is not '<class>/<id>' with a class of meta/classes.txt"),
    ("vegfru", ("vegfru_list/vegfru_train.txt", 1, "veg200_images/cabbage/v_000_0001.jpg 292"),
     "vegfru_train.txt:2", "label 292 out of range 0..291"),
    ("vegfru", ("vegfru_list/vegfru_test.txt", 0, "/abs/x.jpg 1"), "vegfru_test.txt:1",
     "path '/abs/x.jpg' is absolute"),
    ("vegfru", ("vegfru_list/vegfru_val.txt", 0, "just_a_path.jpg"), "vegfru_val.txt:1",
     "expected '<relative path> <label>'"),
    ("nuswide", ("database_label_onehot.txt", 1, "0 1 0"), "database_label_onehot.txt:2",
     "expected 21 values 0/1"),
    ("nuswide", ("test_label_onehot.txt", 0, " ".join(["0"] * 21)), "test_label_onehot.txt:1",
     "no concept set"),
    ("nuswide", ("test_img.txt", 1, "../up.jpg"), "test_img.txt:2", "escapes the dataset root"),
])
def test_bad_lines_name_file_and_line(tmp_path, capsys, name, edit, where, message):
    lay = layouts.BUILDERS[name](tmp_path)
    rel, index, text = edit
    path = lay.base / rel
    lines = path.read_text().splitlines()
    if text is None:  # NABirds: a class id that classes.txt does not list
        text = lines[index].split()[0] + " 4242"
    lines[index] = text
    path.write_text("\n".join(lines) + "\n")
    line = fails(capsys, name, lay.root, tmp_path / "out")
    assert line.startswith(f"error: {lay.base / pathlib.Path(rel).parent}")
    assert f"{where}: " in line and message in line, line
    assert "--skip-bad" in line
    assert not (tmp_path / "out").exists()


def test_binary_entries_out_of_range(tmp_path, capsys):
    dogs = layouts.stanford_dogs(tmp_path / "d")
    layouts._save_list(dogs.base / "lists" / "test_list.mat",
                       [r for r in dogs.expected.source_id[6:]], [1, 9, 3])
    line = fails(capsys, "stanford_dogs", dogs.root, tmp_path / "out")
    assert f"{dogs.base / 'lists' / 'test_list.mat'}:2: entry 2: label 9.0 out of range 1..3" in line
    layouts._save_list(dogs.base / "lists" / "test_list.mat",
                       [r for r in dogs.expected.source_id[6:]], [2, 2, 3])
    line = fails(capsys, "stanford_dogs", dogs.root, tmp_path / "out")
    assert "test_list.mat:1: entry 1: 'n02085620-Chihuahua/n02085620_1000.jpg' is not in the " \
           "folder of label 2" in line
    fm = layouts.fashion_mnist(tmp_path / "f")
    layouts.write_idx(fm.base / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 12, 3, 4]))
    line = fails(capsys, "fashion_mnist", fm.root, tmp_path / "out")
    assert "t10k-labels-idx1-ubyte.gz:3: entry 3: label 12 out of range 0..9" in line
    layouts.truncate(fm.base / "train-images-idx3-ubyte.gz", 0.5)
    line = fails(capsys, "fashion_mnist", fm.root, tmp_path / "out")
    assert line.startswith(f"error: {fm.base / 'train-images-idx3-ubyte.gz'}: cannot read")
    cifar = layouts.cifar10(tmp_path / "c")
    layouts.truncate(cifar.base / "data_batch_3", 0.5)
    line = fails(capsys, "cifar10", cifar.root, tmp_path / "out")
    assert line.startswith(f"error: {cifar.base / 'data_batch_3'}: cannot unpickle")
    assert not (tmp_path / "out").exists()


def test_empty_split_is_an_error(tmp_path, capsys):
    lay = layouts.vegfru(tmp_path)
    (lay.base / "vegfru_list" / "vegfru_test.txt").write_text("\n")
    line = fails(capsys, "vegfru", lay.root, tmp_path / "out")
    assert line.startswith(f"error: {lay.base / 'vegfru_list' / 'vegfru_test.txt'}: no query "
                           "images (0 entries skipped)")
    lay = layouts.aircraft(tmp_path / "a")
    path = lay.base / "images_variant_test.txt"
    path.write_text(path.read_text().replace("0", "x"))  # every line names a missing image
    line = fails(capsys, "aircraft", lay.root, tmp_path / "out", "--skip-bad")
    assert "no query images (3 entries skipped)" in line


def test_failed_run_leaves_an_existing_dataset_untouched(tmp_path, capsys):
    lay = layouts.cifar10(tmp_path)
    out = tmp_path / "out"
    assert run(capsys, "cifar10", lay.root, out)[0] == 0
    before = snapshot(out)
    with open(lay.base / "data_batch_2", "wb") as fh:
        fh.write(b"not a pickle")
    fails(capsys, "cifar10", lay.root, out)
    assert snapshot(out) == before
    lay2 = layouts.food101(tmp_path / "f")
    out2 = tmp_path / "out2"
    assert run(capsys, "food101", lay2.root, out2)[0] == 0
    before = snapshot(out2)
    layouts.garbage(lay2.base / lay2.expected.path[7])
    fails(capsys, "food101", lay2.root, out2)
    assert snapshot(out2) == before


def test_cli_help_names_downloads_and_checksums(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in PREPARERS[:-1]:
        assert name in text
        assert main([name, "--help"]) == 0
        help_text = capsys.readouterr().out
        assert "Download:" in help_text and ("md5" in help_text) and "--root" in help_text
        assert "--skip-bad" in help_text and "--val-fraction" in help_text
    assert main(["food101"]) == 2  # usage error: --root and --out missing
    assert "required" in capsys.readouterr().err


def test_cli_as_a_subprocess(tmp_path):
    """One real `python -m data_prep` run on bad input: exit 1, one line on stderr, no traceback."""
    lay = layouts.food101(tmp_path)
    shutil.rmtree(lay.base / "images" / "waffles")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    bad = subprocess.run([sys.executable, "-m", "data_prep", "food101", "--root", str(lay.root),
                          "--out", str(tmp_path / "bad")], capture_output=True, text=True,
                         cwd=REPO, env=env, timeout=120)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith(f"error: {lay.base / 'meta' / 'train.txt'}:5: image ")
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------ leaks, links, pickles, disk
@pytest.mark.parametrize("name", ["cub200", "nabirds", "aircraft", "food101", "vegfru",
                                  "stanford_dogs", "nuswide"])
def test_an_image_in_two_splits_is_refused_or_dropped_from_the_query(name, tmp_path, capsys):
    lay = layouts.BUILDERS[name](tmp_path)
    dup_file, dup_line, first_file, first_line = layouts.list_an_image_twice(name, lay)
    line = fails(capsys, name, lay.root, tmp_path / "out")
    assert line.startswith(f"error: {dup_file}:{dup_line}: image "), line
    assert "is in the query split and also in the database split at " \
           f"{first_file}:{first_line}; an image on both sides leaks" in line
    assert line.endswith("or re-run with --skip-bad to keep only the database entry")
    assert not (tmp_path / "out").exists()
    rc, out, err = run(capsys, name, lay.root, tmp_path / "skip", "--skip-bad")
    assert rc == 0, err
    ds = read_dataset(tmp_path / "skip")
    compare(ds.frame, lay.expected)  # the database copy stays, the query copy is gone
    assert ds.info["skipped_count"] == 1
    skipped = ds.info["skipped"][0]
    assert (skipped["file"], skipped["line"]) == (str(dup_file), dup_line)
    assert f"{first_file}:{first_line}" in skipped["reason"]
    assert f"{dup_file}:{dup_line}: image " in out


def test_a_duplicated_line_is_refused_or_kept_once(tmp_path, capsys):
    lay = layouts.food101(tmp_path)
    train = lay.base / "meta" / "train.txt"
    dup = layouts.append_lines(train, train.read_text().splitlines()[1])
    line = fails(capsys, "food101", lay.root, tmp_path / "out")
    assert line == (f"error: {train}:{dup}: duplicate entry: image 'images/apple_pie/100001.jpg' "
                    f"is already listed at {train}:2 — delete one of the two lines, or re-run "
                    "with --skip-bad to keep only the first")
    rc, _, _ = run(capsys, "food101", lay.root, tmp_path / "skip", "--skip-bad")
    assert rc == 0
    ds = read_dataset(tmp_path / "skip")
    compare(ds.frame, lay.expected)
    assert [(s["file"], s["line"]) for s in ds.info["skipped"]] == [(str(train), dup)]


def test_the_query_copy_goes_even_when_it_is_listed_first(tmp_path, capsys):
    """CUB lists both splits in one file: a database entry after its query twin wins."""
    lay = layouts.cub(tmp_path)
    images = lay.base / "images.txt"
    query = lay.expected.iloc[0]  # image id 1, a query image
    assert query.split == "query"
    new = layouts.append_lines(images, f"13 {query.path[len('images/'):]}")
    for f, text in (("image_class_labels.txt", "13 1"), ("train_test_split.txt", "13 1"),
                    ("bounding_boxes.txt", "13 1.0 2.0 5.0 4.5")):
        layouts.append_lines(lay.base / f, text)
    line = fails(capsys, "cub200", lay.root, tmp_path / "out")
    assert line.startswith(f"error: {images}:1: image '{query.path}' is in the query split and "
                           f"also in the database split at {images}:{new};")
    rc, _, err = run(capsys, "cub200", lay.root, tmp_path / "skip", "--skip-bad")
    assert rc == 0, err
    ds = read_dataset(tmp_path / "skip")
    assert ds.frame.source_id.tolist() == [str(k) for k in range(2, 14)]
    assert ds.frame.split.iloc[-1] == "database" and ds.frame.path.iloc[-1] == query.path
    assert len(ds.attributes()["present"]) == 12  # the sidecars follow the kept rows


def test_symlinks_must_stay_inside_the_root(tmp_path, capsys):
    lay = layouts.food101(tmp_path / "raw")
    outside = tmp_path / "elsewhere"
    # a file link leading out of the root
    target = lay.base / lay.expected.path[0]  # meta/train.txt line 1
    outside.mkdir()
    secret = outside / "secret.jpg"
    target.rename(secret)
    target.symlink_to(secret)
    line = fails(capsys, "food101", lay.root, tmp_path / "out")
    assert line == (f"error: {lay.base / 'meta/train.txt'}:1: image '{target}' resolves to "
                    f"'{secret}', outside the dataset root '{lay.base.resolve()}' (a symbolic link "
                    f"leads out of it) — {common.FIX_LINK}")
    rc, _, _ = run(capsys, "food101", lay.root, tmp_path / "skip", "--skip-bad")
    assert rc == 0
    assert read_dataset(tmp_path / "skip").frame.path.tolist() == lay.expected.path[1:].tolist()
    target.unlink()
    secret.rename(target)
    # a folder link leading out of the root: its first listed image is refused
    folder = lay.base / "images" / "waffles"
    folder.rename(outside / "waffles")
    folder.symlink_to(outside / "waffles", target_is_directory=True)
    line = fails(capsys, "food101", lay.root, tmp_path / "out")
    assert line.startswith(f"error: {lay.base / 'meta/train.txt'}:5: image '{folder}/100020.jpg' "
                           f"resolves to '{outside / 'waffles' / '100020.jpg'}', outside")
    folder.unlink()
    (outside / "waffles").rename(folder)
    # links that stay inside the root are fine (here: an extra copy kept in another folder) ...
    spare = lay.base / "spare" / "ribs.jpg"
    spare.parent.mkdir()
    ribs = lay.base / lay.expected.path[2]
    ribs.rename(spare)
    ribs.symlink_to(pathlib.Path("../../spare/ribs.jpg"))
    rc, _, err = run(capsys, "food101", lay.root, tmp_path / "inside")
    assert rc == 0, err
    compare(read_dataset(tmp_path / "inside").frame, lay.expected)
    # ... unless they make one file two entries
    query = lay.base / lay.expected.path[8]  # meta/test.txt line 3
    query.unlink()
    query.symlink_to(spare)
    line = fails(capsys, "food101", lay.root, tmp_path / "out")
    assert line.startswith(f"error: {lay.base / 'meta/test.txt'}:3: image '{lay.expected.path[8]}' "
                           f"(the same file as '{lay.expected.path[2]}') is in the query split "
                           f"and also in the database split at {lay.base / 'meta/train.txt'}:3;")
    assert not (tmp_path / "out").exists()


def _crafted_pickle(marker: pathlib.Path) -> bytes:
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)
    return pickle.dumps({b"data": Payload()})


def test_a_crafted_cifar_pickle_runs_nothing(tmp_path, capsys, monkeypatch):
    from data_prep import cifar10
    lay = layouts.cifar10(tmp_path)
    marker = tmp_path / "pwned"
    batch = lay.base / "data_batch_1"
    batch.write_bytes(_crafted_pickle(marker))
    monkeypatch.setitem(EXTRA, "cifar10", [])  # the default checks
    # default: every file's md5 is checked before it is read (here the fake batches.meta first)
    line = fails(capsys, "cifar10", lay.root, tmp_path / "out", "--query-per-class", "1")
    assert line.startswith(f"error: {lay.base / 'batches.meta'}: md5 ")
    assert f"differs from the official {cifar10.META_MD5}" in line and "--no-verify" in line
    monkeypatch.setattr(cifar10, "META_MD5", hashlib.md5(
        (lay.base / "batches.meta").read_bytes()).hexdigest())
    line = fails(capsys, "cifar10", lay.root, tmp_path / "out", "--query-per-class", "1")
    assert line.startswith(f"error: {batch}: md5 {hashlib.md5(batch.read_bytes()).hexdigest()} "
                           f"differs from the official {cifar10.BATCHES['data_batch_1']} (a "
                           "damaged or altered file) — re-download cifar-10-python.tar.gz")
    assert not marker.exists()
    # --no-verify accepts other checksums, but the restricted unpickler still refuses the payload
    line = fails(capsys, "cifar10", lay.root, tmp_path / "out", "--query-per-class", "1",
                 "--no-verify")
    assert line.startswith(f"error: {batch}: cannot unpickle: it refers to {os.system.__module__}"
                           ".system, which a data file never needs (a crafted or foreign file; "
                           "nothing of it was run) — re-extract cifar-10-python.tar.gz")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_the_restricted_unpickler(tmp_path):
    lay = layouts.cifar10(tmp_path)
    for name in layouts.CIFAR_BATCHES[:3]:  # protocol 2 with numpy 1's names, 5, default
        d = common.load_pickle((lay.base / name).read_bytes(), name, "")
        assert d[b"data"].dtype == np.uint8 and d[b"data"].shape == (10, 3072)
        assert isinstance(d[b"labels"][0], int) and isinstance(d[b"filenames"][0], bytes)
    np.testing.assert_array_equal(
        common.load_pickle(layouts.cifar_pickle(np.arange(6.0).reshape(2, 3), 2), "f", ""),
        np.arange(6.0).reshape(2, 3))
    for evil in (eval, getattr, pathlib.Path, shutil.rmtree):
        with pytest.raises(DatasetError) as err:
            common.load_pickle(pickle.dumps(evil), tmp_path / "x", "todo")
        assert str(err.value).startswith(f"{tmp_path / 'x'}: cannot unpickle: it refers to "
                                         f"{evil.__module__}.")
    with pytest.raises(DatasetError, match="cannot unpickle .UnpicklingError"):
        common.load_pickle(b"\x80\x04garbage", "f", "")


def test_a_class_without_database_images_is_a_recorded_warning(tmp_path, capsys):
    lay = layouts.aircraft(tmp_path)
    trainval = lay.base / "images_variant_trainval.txt"
    trainval.write_text("".join(f"{t}\n" for t in trainval.read_text().splitlines()
                                if not t.endswith("Cessna 172")))
    rc, _, err = run(capsys, "aircraft", lay.root, tmp_path / "out", "--quiet")
    assert rc == 0
    message = ("1 of 3 classes has no database image: 2 (Cessna 172); their queries have nothing "
               "relevant to retrieve and training never sees them")
    assert f"warning: aircraft: {message} (recorded in dataset.json 'warnings')" in err
    ds = read_dataset(tmp_path / "out")
    assert ds.info["warnings"] == [message]
    assert list(ds.info).index("warnings") == list(ds.info).index("count_differences") + 1
    # multi-label: a concept counts when one of an image's labels is it
    nus = layouts.nuswide(tmp_path / "n")
    assert run(capsys, "nuswide", nus.root, tmp_path / "nus")[0] == 0
    assert read_dataset(tmp_path / "nus").info["warnings"] == [
        "14 of 21 classes have no database image: 4 (concept_04), 6 (concept_06), 8 (concept_08), "
        "9 (concept_09), 10 (concept_10), 11 (concept_11), 12 (concept_12), 13 (concept_13), "
        "14 (concept_14), 15 (concept_15) and 4 more; their queries have nothing relevant to "
        "retrieve and training never sees them"]
    food = layouts.food101(tmp_path / "f")
    assert run(capsys, "food101", food.root, tmp_path / "food")[0] == 0
    assert read_dataset(tmp_path / "food").info["warnings"] == []


@pytest.mark.parametrize("name, rel", [("cub200", "images.txt"), ("cub200", "classes.txt"),
                                       ("cub200", "attributes/image_attribute_labels.txt"),
                                       ("nabirds", "images.txt"), ("aircraft", "variants.txt"),
                                       ("food101", "meta/classes.txt")])
def test_an_empty_file_is_blamed_by_name(name, rel, tmp_path, capsys):
    lay = layouts.BUILDERS[name](tmp_path)
    (lay.base / rel).write_text("\n \n")
    line = fails(capsys, name, lay.root, tmp_path / "out")
    assert line == (f"error: {lay.base / rel}: the file is empty (no line with an entry) — "
                    "restore it from the original download")


@pytest.mark.parametrize("where", ["png", "manifest", "unnamed"])
def test_a_full_disk_names_the_path_and_keeps_the_old_dataset(where, tmp_path, capsys,
                                                               monkeypatch):
    name = "cifar10" if where == "png" else "food101"
    lay = layouts.BUILDERS[name](tmp_path / "raw")
    out = tmp_path / "out"
    assert run(capsys, name, lay.root, out)[0] == 0
    before, entries = snapshot(out), sorted(os.listdir(out))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    if where == "png":  # PIL writing an extracted image
        monkeypatch.setattr(Image.Image, "save", full)
    elif where == "manifest":  # a2hlib.fileio.write_temporary flushing manifest.csv
        monkeypatch.setattr(os, "fsync", full)
    else:  # an error that does not say which file
        monkeypatch.setattr(common, "write_dataset", full)
    line = fails(capsys, name, lay.root, out)
    detail = "(OSError: [Errno 28] No space left on device)"
    if where == "png":
        assert re.fullmatch(
            rf"error: {re.escape(str(out))}/\.images\.\w+\.tmp/00000\.png: the disk is full, "
            rf"nothing was written {re.escape(detail)} — free space on {re.escape(str(out))}/"
            r"\.images\.\w+\.tmp \(or write elsewhere\) and run again", line), line
    else:
        path = out / "manifest.csv" if where == "manifest" else out
        assert line == (f"error: {path}: the disk is full, nothing was written {detail} — free "
                        f"space on {path.parent} (or write elsewhere) and run again")
    assert snapshot(out) == before and sorted(os.listdir(out)) == entries  # no leftovers
