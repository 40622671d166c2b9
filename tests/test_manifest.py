"""a2hlib.manifest: validation, atomic writing, reading, split helpers."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from a2hlib import manifest
from a2hlib.manifest import DatasetError, carve_val, read_dataset, split_indices, write_dataset


def make_frame(n_db=6, n_q=3, classes=3, bbox=False):
    rows = []
    for k in range(n_db + n_q):
        rows.append({"path": f"img/{k}.png", "label": k % classes,
                     "split": "database" if k < n_db else "query", "source_id": f"id{k}"})
    f = pd.DataFrame(rows)
    if bbox:
        for col in manifest.BBOX_COLUMNS:
            f[col] = np.arange(len(f), dtype=float) + 0.5
    return f


def make_info(classes=3, **kw):
    return {"name": "toy", "num_classes": classes, "class_names": [f"c{k}" for k in range(classes)],
            "multi_label": False, **kw}


def snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())
            if p.is_file()}


def test_roundtrip_single_label_with_sidecars(tmp_path):
    f = make_frame(bbox=True)
    f = f[["source_id", "split", "label", "path", *manifest.BBOX_COLUMNS]]  # any column order
    n = len(f)
    arrays = {"attributes": {"present": np.eye(n, 4, dtype=bool), "certainty": np.full((n, 4), 3)},
              "parts": {"xyv": np.ones((n, 2, 3))},
              "masks": {"object": np.zeros((n, 5, 5), bool), "shortcut": np.ones((n, 5, 5), bool)}}
    info = make_info(attribute_names=list("abcd"), part_names=["head", "tail"], seed=7)
    out = write_dataset(tmp_path / "ds", f, info, arrays)
    assert out == (tmp_path / "ds").resolve()
    assert sorted(p.name for p in out.iterdir()) == ["attributes.npz", "dataset.json",
                                                     "manifest.csv", "masks.npz", "parts.npz"]
    header = (out / "manifest.csv").read_text().splitlines()[0]
    assert header == "index,path,label,split,bbox_x,bbox_y,bbox_w,bbox_h,source_id"
    ds = read_dataset(out)
    assert ds.root == out and ds.name == "toy" and ds.num_classes == 3 and not ds.multi_label
    assert ds.counts == {"database": 6, "query": 3, "val": 0}
    assert ds.info["format_version"] == 1 and ds.info["seed"] == 7 and ds.info["skipped"] == []
    assert list(ds.info)[:3] == ["name", "format_version", "image_root"]
    assert ds.frame["index"].tolist() == list(range(n))
    assert ds.frame["label"].dtype == np.int64 and ds.frame["bbox_x"].dtype == np.float64
    assert ds.frame["path"].tolist() == [f"img/{k}.png" for k in range(n)]
    assert ds.image_root == out and ds.image_path(2) == out / "img/2.png"
    a = ds.attributes()
    assert a["present"].dtype == np.uint8 and a["certainty"].dtype == np.uint8
    np.testing.assert_array_equal(a["present"], np.eye(n, 4, dtype=np.uint8))
    assert ds.parts()["xyv"].dtype == np.float32 and ds.parts()["xyv"].shape == (n, 2, 3)
    assert ds.masks()["object"].dtype == np.bool_ and set(ds.masks()) == {"object", "shortcut"}
    assert ds.attributes() is a  # loaded once
    np.testing.assert_array_equal(ds.targets(), np.arange(n) % 3)
    np.testing.assert_array_equal(ds.indices("query"), [6, 7, 8])


def test_roundtrip_multi_label_and_absolute_image_root(tmp_path):
    f = pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"], "labels": ["0 2", "1", "0 1 2"],
                      "split": ["database", "database", "query"]})
    info = make_info(multi_label=True, image_root=str(tmp_path / "raw"))
    ds = read_dataset(write_dataset(tmp_path / "ds", f, info))
    assert ds.multi_label and "label" not in ds.frame.columns
    assert ds.image_root == tmp_path / "raw"
    np.testing.assert_array_equal(ds.targets(), [[1, 0, 1], [0, 1, 0], [1, 1, 1]])
    assert ds.targets().dtype == np.float32
    assert ds.attributes() is None and ds.parts() is None and ds.masks() is None


@pytest.mark.parametrize("change, message, line", [
    (lambda f: f.assign(label=f.label.where(f.index != 4, 3)), "label 3 out of range 0..2", 6),
    (lambda f: f.assign(label=f.label.where(f.index != 1, -1)), "label -1 out of range", 3),
    (lambda f: f.assign(split=f.split.where(f.index != 2, "train")), "split 'train'", 4),
    (lambda f: f.assign(path=f.path.where(f.index != 0, "/etc/passwd")), "is absolute", 2),
    (lambda f: f.assign(path=f.path.where(f.index != 3, "img/../../x.png")), "contains '..'", 5),
    (lambda f: f.assign(path=f.path.where(f.index != 3, "img\\x.png")), "backslash", 5),
    (lambda f: f.assign(index=np.arange(len(f)) + 1), "expected the row number 0", 2),
    (lambda f: f.drop(columns="split"), "missing column(s) ['split']", None),
    (lambda f: f.assign(split="database"), "split 'query' is empty", None),
    (lambda f: f.iloc[:0], "no rows", None),
    (lambda f: f.assign(bbox_x=1.0), "bounding boxes need all of", None),
    (lambda f: f.assign(labels="0"), "'labels' does not belong", None),
])
def test_write_rejects_bad_rows_and_leaves_existing_dataset_untouched(tmp_path, change, message, line):
    out = tmp_path / "ds"
    write_dataset(out, make_frame(), make_info())
    before = snapshot(out)
    with pytest.raises(DatasetError) as err:
        write_dataset(out, change(make_frame()), make_info())
    assert message in str(err.value)
    assert err.value.file == str(out / "manifest.csv")
    assert err.value.line == line
    assert str(err.value).startswith(f"{out / 'manifest.csv'}" + (f":{line}: " if line else ": "))
    assert " — " in str(err.value)  # says what to do
    assert snapshot(out) == before  # nothing modified, no temp files left


@pytest.mark.parametrize("info, arrays, message", [
    (make_info(num_classes=4), None, "class_names must be a list of num_classes=4"),
    (make_info(image_root="relative/dir"), None, "image_root must be an absolute path or '.'"),
    ({"name": "x"}, None, "missing key(s)"),
    (make_info(multi_label="no"), None, "multi_label must be true or false"),
    (make_info(), {"attributes": {"present": np.zeros((9, 2)), "certainty": np.zeros((9, 2))}},
     "attribute_names has None entries"),
    (make_info(attribute_names=["a", "b"]),
     {"attributes": {"present": np.zeros((8, 2)), "certainty": np.zeros((8, 2))}},
     "first dimension must be the number of manifest rows N=9"),
    (make_info(attribute_names=["a"]), {"attributes": {"present": np.zeros((9, 1))}},
     "missing array(s) ['certainty']"),
    (make_info(part_names=["a"]), {"parts": {"xyv": np.zeros((9, 2, 3))}}, "expected (N, P, 3)"),
    (make_info(), {"masks": {"object": np.full((9, 2, 2), 2)}}, "must be boolean"),
    (make_info(), {"colours": {"x": np.zeros(9)}}, "unknown sidecar 'colours'"),
])
def test_write_rejects_bad_info_and_arrays(tmp_path, info, arrays, message):
    with pytest.raises(DatasetError, match=None) as err:
        write_dataset(tmp_path / "new", make_frame(), info, arrays)
    assert message in str(err.value)
    assert not (tmp_path / "new").exists()  # created nothing


def test_failure_while_writing_removes_temp_files_and_keeps_old_files(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    write_dataset(out, make_frame(), make_info())
    before = snapshot(out)

    def boom(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(manifest.json, "dumps", boom)  # dataset.json is written last
    arrays = {"masks": {"object": np.zeros((9, 3, 3), bool)}}
    with pytest.raises(OSError):
        write_dataset(out, make_frame(n_db=7, n_q=2), make_info(), arrays)
    assert snapshot(out) == before
    assert not list(out.glob(".*"))
    with pytest.raises(OSError):
        write_dataset(tmp_path / "fresh", make_frame(), make_info(), arrays)
    assert not (tmp_path / "fresh").exists()


def test_rewrite_replaces_files_and_drops_stale_sidecars(tmp_path):
    out = tmp_path / "ds"
    write_dataset(out, make_frame(), make_info(), {"masks": {"object": np.zeros((9, 2, 2), bool)}})
    write_dataset(out, make_frame(n_db=4, n_q=2), make_info())
    assert not (out / "masks.npz").exists()
    assert read_dataset(out).counts == {"database": 4, "query": 2, "val": 0}
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "manifest.csv"]


def test_image_dir_is_committed_with_the_manifest(tmp_path):
    out = tmp_path / "ds"
    for gen in range(2):
        with manifest.staging_dir(out) as stage:
            (stage / "0.png").write_bytes(b"gen%d" % gen)
            write_dataset(out, make_frame(), make_info(), image_dir=stage)
        assert (out / "images" / "0.png").read_bytes() == b"gen%d" % gen
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "images", "manifest.csv"]
    # an error inside the block: the staging folder goes, the committed images stay
    with pytest.raises(DatasetError):
        with manifest.staging_dir(out) as stage:
            (stage / "0.png").write_bytes(b"bad")
            write_dataset(out, make_frame().assign(label=9), make_info(), image_dir=stage)
    assert (out / "images" / "0.png").read_bytes() == b"gen1"
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "images", "manifest.csv"]
    with pytest.raises(ValueError):
        with manifest.staging_dir(tmp_path / "never") as stage:
            raise ValueError
    assert not (tmp_path / "never").exists()


def test_read_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(DatasetError, match="prepared dataset folder not found"):
        read_dataset(tmp_path / "nothing")
    out = tmp_path / "ds"
    write_dataset(out, make_frame(), make_info(attribute_names=["a"]),
                  {"attributes": {"present": np.zeros((9, 1)), "certainty": np.ones((9, 1))}})
    text = (out / "manifest.csv").read_text().splitlines()
    text[4] = text[4].replace(",database,", ",training,")
    (out / "manifest.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DatasetError) as err:
        read_dataset(out)
    assert str(err.value).startswith(f"{out / 'manifest.csv'}:5: split 'training'")
    assert "python -m data_prep" in str(err.value)
    text[4] = text[4].replace(",training,", ",database,")
    (out / "manifest.csv").write_text("\n".join(text) + "\n")
    info = json.loads((out / "dataset.json").read_text())
    (out / "dataset.json").write_text(json.dumps({**info, "counts": {"database": 1}}))
    with pytest.raises(DatasetError, match="do not match manifest.csv"):
        read_dataset(out)
    (out / "dataset.json").write_text('{"name": "x",\n  oops}')
    with pytest.raises(DatasetError) as err:
        read_dataset(out)
    assert str(err.value).startswith(f"{out / 'dataset.json'}:2: not valid JSON")
    (out / "dataset.json").write_text(json.dumps({**info, "format_version": 2}))
    with pytest.raises(DatasetError, match="format_version 2 is not supported"):
        read_dataset(out)
    (out / "dataset.json").write_text(json.dumps(info))
    (out / "attributes.npz").write_bytes(b"PK\x03\x04 broken")
    ds = read_dataset(out)
    with pytest.raises(DatasetError) as err:
        ds.attributes()
    assert str(err.value).startswith(f"{out / 'attributes.npz'}: cannot read")
    os.remove(out / "manifest.csv")
    with pytest.raises(DatasetError, match="missing file"):
        read_dataset(out)


def test_dataset_error_format_and_pickle():
    import pickle
    e = DatasetError("bad thing", "do this", file="a/b.txt", line=3)
    assert str(e) == "a/b.txt:3: bad thing — do this"
    assert str(pickle.loads(pickle.dumps(e))) == str(e)
    assert str(DatasetError("x")) == "x"


def test_split_indices():
    f = make_frame().assign(split=["database", "val", "query"] * 3)
    np.testing.assert_array_equal(split_indices(f, "val"), [1, 4, 7])
    np.testing.assert_array_equal(split_indices(f, ("database", "val")), [0, 1, 3, 4, 6, 7])
    assert split_indices(f, "val").dtype == np.int64
    with pytest.raises(ValueError, match="unknown split"):
        split_indices(f, "train")


def test_carve_val_is_stratified_seeded_and_leaves_queries():
    f = pd.DataFrame({"path": [f"{k}.png" for k in range(130)],
                      "label": [0] * 50 + [1] * 30 + [2] * 1 + [0] * 49,
                      "split": ["database"] * 81 + ["query"] * 49})
    g = carve_val(f, 0.2, seed=3)
    assert (g["split"] == "val").sum() == 10 + 6
    assert g.loc[g.split == "val", "label"].value_counts().to_dict() == {0: 10, 1: 6}
    assert (g["split"].iloc[81:] == "query").all()
    assert (g[g.label == 2].split == "database").all()  # one image: stays in the database
    assert g.equals(carve_val(f, 0.2, seed=3))
    assert not g.equals(carve_val(f, 0.2, seed=4))
    assert (f["split"] != "val").all()  # input untouched
    assert carve_val(f, 0.0, 0).equals(f)
    with pytest.raises(ValueError):
        carve_val(f, 1.0, 0)
    multi = pd.DataFrame({"labels": ["0 1"] * 10 + ["1"] * 10, "split": ["database"] * 20})
    assert (carve_val(multi, 0.5, 0)["split"] == "val").sum() == 10


def test_extra_columns_and_info_keys_survive(tmp_path):
    f = make_frame().assign(shortcut_class=[2, 0, 1] * 3, note="x")
    ds = read_dataset(write_dataset(tmp_path, f, make_info(protocol="toy split")))
    assert list(ds.frame.columns)[-3:] == ["source_id", "shortcut_class", "note"]
    assert ds.frame.shortcut_class.tolist() == [2, 0, 1] * 3 and ds.info["protocol"] == "toy split"
    text = (tmp_path / "manifest.csv").read_text().replace("\n2,img/2.png,2,", "\n2,img/2.png,two,")
    (tmp_path / "manifest.csv").write_text(text)
    with pytest.raises(DatasetError) as err:
        read_dataset(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'manifest.csv'}:4: label 'two' is not an integer")
