"""The papermill grid runner: real notebooks on a two-point grid, one point made to fail (smoke
mode: CI is set); then locks, devices and executors with papermill replaced by a fake."""
import errno
import fcntl
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import fake_notebooks
import pytest

from a2hlib import batch
from a2hlib.fileio import write_json


@pytest.fixture(autouse=True)
def smoke(monkeypatch):
    monkeypatch.setenv("CI", "true")


def test_grid_records_failure_continues_and_skips_finished(tmp_path, capsys, monkeypatch):
    """Real papermill and kernels, on stand-ins of 02 and 03 (their parameters cells and one line of
    work, tests/fake_notebooks.py); nbval runs the notebooks themselves."""
    monkeypatch.setattr(batch, "run_notebook", fake_notebooks.stand_in_runner(tmp_path / "stand_ins"))
    runs = tmp_path / "runs"
    broken = runs / "smoke" / "data" / "broken"  # passes the CLI's check, fails in the notebook
    broken.mkdir(parents=True)
    (broken / "dataset.json").write_text("{}")
    argv = ["--datasets", "synthetic", "broken", "--models", "adsh", "--bits", "8", "--runs-dir", str(runs)]
    assert batch.main(argv) == 1
    out = capsys.readouterr().out
    good = runs / "smoke" / "synthetic" / "adsh-8b-s0"
    executed = json.loads((good / "02_training.ipynb").read_text())
    injected = next(c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    assert "model = \"adsh\"" in "".join(injected["source"]) and "code_length = 8" in "".join(injected["source"])
    assert (good / "metrics.json").exists() and (good / "evaluation.json").exists()
    lines = {tuple(line.split()[:5]) for line in out.splitlines()}
    assert ("broken", "adsh", "8b", "s0", "02_training") in lines
    failed_line = next(line for line in out.splitlines() if line.startswith("broken") and "02_training" in line)
    assert "failed" in failed_line and "02_training.ipynb" in failed_line and "DatasetError" in failed_line
    blocked = next(line for line in out.splitlines() if line.startswith("broken") and "03_retrieval" in line)
    assert "blocked" in blocked
    assert "2 done, 0 skipped, 1 failed, 1 blocked" in out

    assert batch.main(["--datasets", "synthetic", "--models", "adsh", "--bits", "8", "--runs-dir", str(runs)]) == 0
    assert "0 done, 2 skipped, 0 failed" in capsys.readouterr().out


def test_unknown_parameter_is_refused_before_anything_runs(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit, match="no_such_parameter"):
        batch.main(["--models", "adsh", "--bits", "8", "--runs-dir", str(runs), "--param", "no_such_parameter=3"])
    assert not runs.exists()


@pytest.mark.parametrize("param, message", [
    ('overrides={"lr": "x"}', r"02_training.ipynb \(synthetic adsh 8b s0\): parameter overrides = .*'lr'.* is not a float"),
    ("overrides={'seed': 1}", r"sets 'seed', which has its own parameter"),
    ("topk=0", r"03_retrieval_evaluation.ipynb .*parameter topk = 0 must be ≥ 1"),
])
def test_bad_parameter_values_are_refused_before_any_kernel(tmp_path, param, message):
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit, match=message):
        batch.main(["--models", "adsh", "--bits", "8", "--runs-dir", str(runs), "--param", param])
    assert not runs.exists()


def test_params_are_parsed_as_python_literals():
    assert batch.parse_params(["epochs=3", "lr=1e-3", "name=abc", "flags=[1, 2]"]) == {
        "epochs": 3, "lr": 1e-3, "name": "abc", "flags": [1, 2]}
    with pytest.raises(SystemExit, match="name=value"):
        batch.parse_params(["epochs"])


# ------------------------------------------------------------------ locks, devices, executors
# These replace papermill with tests/fake_notebooks.py: the grid machinery runs for real
# (locks, worker processes, submitit jobs), the notebooks take no time.
TESTS = pathlib.Path(__file__).resolve().parent
GRID = ["--datasets", "synthetic", "--models", "adsh", "a2net", "--bits", "8"]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """papermill replaced by the fake, here and in the worker processes and jobs; its log path."""
    log = tmp_path / "executions.log"
    monkeypatch.setenv("FAKE_NOTEBOOK_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setattr(batch, "run_notebook", fake_notebooks.run_notebook)
    return log


def grid_steps(runs, argv=GRID):
    notebooks = pathlib.Path(batch.NOTEBOOKS_DIR)
    return batch.plan(batch.build_parser().parse_args([*argv, "--runs-dir", str(runs)]), {}, notebooks)


def test_analysis_notebooks_run_after_training_with_their_parameters(tmp_path, fake, capsys):
    """--analyses adds 04 and 05 (executed for real by nbval) after the training points, at the
    largest code length or --analysis-bits, with the notebooks' done files; a second run skips all."""
    runs = tmp_path / "runs"
    argv = ["--datasets", "synthetic", "--models", "adsh", "--bits", "8", "12", "--runs-dir", str(runs),
            "--analyses", "--param", "workers=2"]
    assert batch.main(argv) == 0
    done = fake_notebooks.executions(fake)
    names = [e["notebook"] for e in done]
    assert names[-2:] == ["04_simplicity_bias", "05_bit_attributes"] and names.count("02_training") == 2
    assert {e["parameters"]["code_length"] for e in done[-2:]} == {12}
    assert all(e["parameters"]["workers"] == 2 and e["parameters"]["dataset"] == "synthetic" for e in done[-2:])
    analysis = runs / "smoke" / "synthetic" / "analysis"
    assert (analysis / "simplicity_bias.json").exists() and (analysis / "bit_attributes_12b.json").exists()
    assert "6 done, 0 skipped, 0 failed" in capsys.readouterr().out
    assert batch.main(argv) == 0 and "0 done, 6 skipped, 0 failed" in capsys.readouterr().out
    assert batch.main([*argv, "--analysis-bits", "8"]) == 0
    assert fake_notebooks.executions(fake)[-1]["parameters"]["code_length"] == 8


def test_two_runners_on_one_runs_folder_run_every_point_once(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("FAKE_NOTEBOOK_SECONDS", "0.05")
    runs = tmp_path / "runs"
    argv = ["--datasets", "synthetic", "--models", "adsh", "a2net", "a2netpp", "--bits", "8", "16"]
    runners = [grid_steps(runs, argv), grid_steps(runs, argv)]
    start = threading.Barrier(2)

    def runner(steps, name):
        start.wait()
        batch.execute(steps, batch.Settings(batch.NOTEBOOKS_DIR, grid=name, execute=fake_notebooks.run_notebook),
                      progress=False)

    threads = [threading.Thread(target=runner, args=(steps, f"runner{i}")) for i, steps in enumerate(runners)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ran = Counter((e["notebook"], e["output"]) for e in fake_notebooks.executions(fake))
    assert len(ran) == 12 and set(ran.values()) == {1}  # 6 points × 2 notebooks, each exactly once
    for first, second in zip(*runners):
        assert sorted([first.status, second.status])[0] == "done"
        assert {first.status, second.status} - {"done"} <= {"skipped", "locked"}


def test_a_held_point_is_skipped_and_a_killed_holder_leaves_no_lock(tmp_path, fake, capsys):
    runs = tmp_path / "runs"
    argv = ["--models", "adsh", "--bits", "8", "--runs-dir", str(runs)]
    point = batch.points_of(grid_steps(runs, ["--models", "adsh", "--bits", "8"]))[0]
    point.folder.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import pathlib, sys, time; from a2hlib import batch; "
         "lock = batch.point_lock(pathlib.Path(sys.argv[1]), 'other'); lock.acquire(); print('held', flush=True); time.sleep(600)",
         str(point.lock_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert batch.main(argv) == 0
        out = capsys.readouterr().out
        assert f"held by pid {holder.pid} on " in out and "0 done, 0 skipped, 0 failed, 0 blocked, 2 locked" in out
        assert fake_notebooks.executions(fake) == []
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert batch.main([*argv, "--timeout", "120"]) == 0  # the killed holder's lock died with it
    assert "2 done, 0 skipped, 0 failed, 0 blocked, 0 locked" in capsys.readouterr().out
    assert [e["timeout"] for e in fake_notebooks.executions(fake)] == [120, 120]
    record = json.loads(point.status_path.read_text())
    assert [s["status"] for s in record["steps"]] == ["done", "done"] and record["pid"] == os.getpid()


def test_a_file_system_without_locks_fails_every_point_saying_so(tmp_path, fake, monkeypatch, capsys):
    def no_flock(fd, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    assert batch.main([*GRID, "--runs-dir", str(tmp_path / "runs")]) == 1
    out = capsys.readouterr().out
    assert "0 done, 0 skipped, 4 failed" in out and out.count("file system has no file locks (Function not implemented)") == 4
    assert fake_notebooks.executions(fake) == []


def test_a_later_stage_waits_for_points_other_runners_hold(tmp_path, fake, capsys):
    runs = tmp_path / "runs"
    held = batch.points_of(grid_steps(runs))[0]
    held.folder.mkdir(parents=True)
    go, locked = threading.Event(), threading.Event()

    def other_runner():  # holds the point, and finishes it when told
        with batch.point_lock(held.lock_path, "other"):
            locked.set()
            go.wait(60)
            for step in held.steps:
                step.output.write_text("{}")
                step.done_marker.write_text("{}")

    other = threading.Thread(target=other_runner)
    other.start()
    locked.wait(60)
    result = []
    grid = threading.Thread(target=lambda: result.append(batch.main([*GRID, "--runs-dir", str(runs), "--results"])))
    grid.start()
    out, deadline = "", time.monotonic() + 60
    while "waiting for 1 point(s) that other runners hold" not in out and time.monotonic() < deadline:
        time.sleep(0.05)
        out += capsys.readouterr().out
    before = [e["notebook"] for e in fake_notebooks.executions(fake)]
    go.set()
    other.join()
    grid.join()
    assert "waiting for 1 point(s)" in out and held.label in out
    assert before == ["02_training", "03_retrieval_evaluation"]  # the free point; 06 waits for the held one
    executions = fake_notebooks.executions(fake)
    assert [e["notebook"] for e in executions[2:]] == ["06_results"] and result == [0]
    assert not any(str(held.folder) in e["output"] for e in executions)
    assert "3 done, 0 skipped, 0 failed, 0 blocked, 2 locked" in out + capsys.readouterr().out


def test_devices_run_points_side_by_side_one_worker_per_device(tmp_path, fake, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_NOTEBOOK_RENDEZVOUS", "2")  # fails unless both points run at once
    runs = tmp_path / "runs"
    assert batch.main([*GRID, "--runs-dir", str(runs), "--devices", "cpu,cpu"]) == 0
    assert "4 done, 0 skipped, 0 failed" in capsys.readouterr().out
    executions = fake_notebooks.executions(fake)
    workers = {e["pid"] for e in executions}
    assert len(workers) == 2 and os.getpid() not in workers
    assert all(e["devices"] == "" and e["timeout"] is None for e in executions)  # cpu hides every GPU
    for point in {e["output"].rsplit("/", 2)[1] for e in executions}:  # a point's steps stay on one worker
        assert len({e["pid"] for e in executions if f"/{point}/" in e["output"]}) == 1


def test_local_executor_runs_points_as_parallel_jobs(tmp_path, fake, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_NOTEBOOK_RENDEZVOUS", "2")
    runs = tmp_path / "runs"
    assert batch.main([*GRID, "--runs-dir", str(runs), "--executor", "local"]) == 0
    assert "4 done, 0 skipped, 0 failed" in capsys.readouterr().out
    executions = fake_notebooks.executions(fake)
    assert len({e["pid"] for e in executions}) == 2 and os.getpid() not in {e["pid"] for e in executions}
    assert any((runs / "smoke" / "_submitit").iterdir())  # submitit's job folders and logs


class JobsThatDie:
    """An executor whose jobs die without a result, leaving `status` (a record's steps) or nothing."""

    def __init__(self, status=None, grid="this"):
        self.status, self.grid = status, grid

    def run(self, points, settings, tick):
        for point in points:
            if self.status is not None:
                write_json(point.status_path, {"grid": self.grid, "steps": self.status})
        return [(None, "job 7 ended without a result")] * len(points)


def test_a_job_that_dies_is_reported_from_its_status_file(tmp_path):
    settings = batch.Settings(batch.NOTEBOOKS_DIR, grid="this")
    steps = grid_steps(tmp_path / "a")
    killed_in_03 = [{"status": "done", "error": "", "seconds": 3.0}, {"status": "running", "error": "", "seconds": 0}]
    batch.execute(steps, settings, JobsThatDie(killed_in_03), progress=False)
    assert [s.status for s in steps] == ["done", "failed"] * 2
    assert steps[1].error == "job 7 ended without a result" and steps[0].seconds == 3.0
    for leaves in (JobsThatDie(), JobsThatDie(killed_in_03, grid="an earlier grid run")):
        steps = grid_steps(tmp_path / "b")
        batch.execute(steps, settings, leaves, progress=False)
        assert [s.status for s in steps] == ["failed", "blocked"] * 2 and steps[0].error.startswith("job 7")


def test_slurm_submission_script(tmp_path, monkeypatch):
    bin_dir, record = tmp_path / "bin", tmp_path / "sbatch"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {record}.sh\necho "$@" > {record}.args\n'
                                    'echo "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    runs = tmp_path / "runs"
    parser = batch.build_parser()
    args = parser.parse_args([*GRID, "--runs-dir", str(runs), "--executor", "slurm", "--partition", "gpu",
                              "--time-limit", "720", "--gpus-per-job", "1", "--cpus-per-job", "8", "--mem-gb", "32",
                              "--array-parallelism", "1", "--slurm-option", "account=proj"])
    batch.check_execution_options(args, parser)
    jobs = batch.make_executor(args, runs).submit(batch.points_of(grid_steps(runs)), batch.Settings(batch.NOTEBOOKS_DIR))
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1"]  # one array, one task per point
    script = (tmp_path / "sbatch.sh").read_text().splitlines()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=720", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32GB", "#SBATCH --array=0-1%1",
                 "#SBATCH --account=proj", "#SBATCH --job-name=a2h-grid"):
        assert line in script
    assert any(line.startswith("srun ") and f"{sys.executable} -u -m submitit.core._submit" in line for line in script)
    assert not (runs / "smoke" / "synthetic").exists()  # submitted, nothing ran here


@pytest.mark.parametrize("argv, option", [
    (["--models", "adsh", "--bits", "0"], "--bits"),
    (["--bits", "8", "8"], "--bits"),
    (["--seeds", "-1"], "--seeds"),
    (["--datasets", "nowhere"], "--datasets"),
    (["--datasets", "cub200"], "--datasets"),
    (["--config", "huge"], "--config"),
    (["--timeout", "0"], "--timeout"),
    (["--devices", "0,gpu"], "--devices"),
    (["--devices", "cpu", "--executor", "local"], "--devices"),
    (["--partition", "gpu"], "--partition"),
    (["--time-limit", "60"], "--time-limit"),
    (["--executor", "slurm", "--time-limit", "60"], "--executor"),  # no sbatch here
])
def test_grid_options_are_checked_before_anything_is_created(tmp_path, capsys, monkeypatch, argv, option):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_:
        batch.main([*argv, "--runs-dir", str(runs)])
    assert exit_.value.code == 2 and f"argument {option}:" in capsys.readouterr().err
    assert not runs.exists()


def test_device_indices_count_among_the_visible_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert batch.worker_devices(["1", "cpu", "0", "GPU-8a1b"]) == ["5", "", "3", "GPU-8a1b"]
    with pytest.raises(ValueError, match="sees 2 GPU"):
        batch.worker_devices(["2"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ValueError, match="sees 0 GPU"):
        batch.worker_devices(["0"])
