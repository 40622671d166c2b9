"""data_prep: every preparer end to end on small copies of the raw layouts, and bad input."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from a2hlib.manifest import read_dataset
from data_prep import PREPARERS, common
from data_prep.__main__ import main
try:
    from tests import layouts
except ImportError:  # pytest run from elsewhere: tests/ itself is on sys.path
    import layouts

REPO = pathlib.Path(__file__).resolve().parents[1]
EXTRA = {"cifar10": ["--query-per-class", "1"]}
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
