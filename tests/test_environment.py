"""The install files agree with each other, and the notebooks follow the workbook's habits."""
import json
import pathlib
import re
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONDA_NAMES = {"torch": "pytorch"}


def lock():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def direct_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = project["dependencies"] + [d for group in project["optional-dependencies"].values() for d in group]
    return sorted({re.split(r"[<>=!~\[ ]", d)[0].lower() for d in names})


def conda_pins():
    pins, channels, section = {}, [], None
    for line in (ROOT / "environment.yml").read_text().splitlines():
        stripped = line.split("#")[0].rstrip()
        if stripped.endswith(":") and not stripped.startswith(" "):
            section = stripped[:-1]
        elif section == "channels" and stripped.strip().startswith("- "):
            channels.append(stripped.strip()[2:])
        elif section == "dependencies" and re.match(r"^ +- [\w.-]+==", stripped):  # conda or pip: entry
            name, version = stripped.strip()[2:].split("==")
            pins[name] = version
    return pins, channels


def test_torch_and_torchvision_pinned_together():
    pins = lock()
    assert pins["torch"] == "2.13.0" and pins["torchvision"] == "0.28.0"


def test_every_direct_dependency_is_pinned_in_the_lock():
    pins = lock()
    assert [d for d in direct_dependencies() if d not in pins] == []


def test_environment_yml_matches_the_lock():
    pins, channels = conda_pins()
    assert channels == ["conda-forge"]
    expected = {CONDA_NAMES.get(d, d): lock()[d] for d in direct_dependencies()}
    assert pins == expected


def test_ci_script_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped_and_has_one_documented_parameters_cell(path):
    import papermill
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    tagged = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    assigned = [line.split(":")[0] for line in source.splitlines() if re.match(r"^\w+\s*:", line)]
    inferred = papermill.inspect_notebook(str(path))
    assert list(inferred) == assigned  # papermill --help-notebook documents every parameter
    assert all(p["help"] for p in inferred.values())
    assert not any("pip install" in "".join(c["source"]) for c in code)


def test_make_test_runs_in_parallel_with_the_notebooks_and_the_site_each_in_one_process():
    from conftest import schedule_group
    command = next(line for line in (ROOT / "Makefile").read_text().splitlines() if "-m pytest" in line)
    assert "-n auto" in command and "--nbval-lax" in command
    assert {schedule_group(f"notebooks/{p.name}::Cell {i}") for p in NOTEBOOKS for i in (0, 3)} == {"notebooks"}
    assert {schedule_group(f"tests/{name}::test_x") for name in ("test_book.py", "test_browser.py",
                                                                  "test_figures_inline.py")} == {"site"}
    assert schedule_group("tests/test_stats.py::test_formatters") == "tests/test_stats.py::test_formatters"
