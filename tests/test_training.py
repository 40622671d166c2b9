import shutil

import pytest
import torch

import a2hlib.training as training
from a2hlib.codes import binarize
from a2hlib.metrics import mean_average_precision
from a2hlib.models import encode
from a2hlib.training import TrainConfig, get_config, load_checkpoint, train, update_database_codes


def loop_dcc(B, U, sample_index, S, gamma):
    """Plain reference: for each bit, for each database row."""
    B = B.clone()
    n, k = B.shape
    m = U.shape[0]
    for bit in range(k):
        for j in range(n):
            q = sum(k * S[i, j] * U[i, bit] for i in range(m))
            if j in sample_index.tolist():
                q += gamma * U[sample_index.tolist().index(j), bit]
            correction = 0.0
            for t in range(k):
                if t != bit:
                    correction += B[j, t] * sum(U[i, t] * U[i, bit] for i in range(m))
            B[j, bit] = 1.0 if q - correction >= 0 else -1.0
    return B


def test_dcc_update_matches_plain_loop():
    g = torch.Generator().manual_seed(0)
    n, m, k = 11, 4, 6
    B = binarize(torch.randn(n, k, generator=g))
    U = torch.tanh(torch.randn(m, k, generator=g)).double()
    sample = torch.tensor([7, 2, 9, 0])
    S = torch.rand(m, n, generator=g).double() * 2 - 1
    fast = update_database_codes(B, U, sample, S, 200.0)
    assert torch.equal(fast, loop_dcc(B.double(), U, sample, S, 200.0).float())
    assert set(fast.unique().tolist()) <= {-1.0, 1.0}


def tiny_config(model, **kw):
    base = dict(model=model, code_length=8, num_samples=48, outer_iterations=2, epochs=2, batch_size=12, lr=3e-3)
    return get_config("smoke", **{**base, **kw})


@pytest.mark.parametrize("model", ["adsh", "a2net", "a2netpp"])
def test_tiny_full_loop_beats_random_codes(blob_dataset, model):
    state = train(tiny_config(model, seed=1), blob_dataset, progress=False)
    assert len(state.history) == 2 * 2 * 4 and state.iteration == 2  # iterations × epochs × batches
    labels = blob_dataset.targets
    codes = binarize(encode(state.model, blob_dataset))
    learned = mean_average_precision(codes, state.B, labels, labels)
    random = mean_average_precision(codes, binarize(torch.randn_like(state.B)), labels, labels)
    assert learned > 0.9 and random < 0.5
    assert set(state.history[0]) >= {"hash", "quant", "total"}


def test_resume_gives_same_codes_and_weights(blob_dataset, tmp_path, monkeypatch):
    config = tiny_config("a2netpp", seed=3)
    full = train(config, blob_dataset, checkpoint=tmp_path / "full.pt", progress=False)

    saved = []
    real_save = training.save_checkpoint

    def save_and_keep_first(path, state, optimizer, generator):
        real_save(path, state, optimizer, generator)
        if state.iteration == 1:
            shutil.copy(path, tmp_path / "after1.pt")
        saved.append(state.iteration)

    monkeypatch.setattr(training, "save_checkpoint", save_and_keep_first)
    train(config, blob_dataset, checkpoint=tmp_path / "x.pt", progress=False)
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    assert saved == [1, 2]
    resumed = train(config, blob_dataset, checkpoint=tmp_path / "after1.pt", progress=False)
    assert torch.equal(resumed.B, full.B)
    assert resumed.history == full.history
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    ckpt = load_checkpoint(tmp_path / "full.pt")  # weights_only=True inside
    assert ckpt["iteration"] == 2 and TrainConfig.from_dict(ckpt["config"]) == config


def test_checkpoint_from_other_config_is_refused(blob_dataset, tmp_path):
    config = tiny_config("adsh", outer_iterations=1)
    train(config, blob_dataset, checkpoint=tmp_path / "c.pt", progress=False)
    with pytest.raises(ValueError, match="another config"):
        train(tiny_config("adsh", outer_iterations=1, code_length=12), blob_dataset,
              checkpoint=tmp_path / "c.pt", progress=False)


def test_validation_selection_keeps_best_state(blob_dataset):
    scores = iter([0.5, 0.9, 0.1])
    state = train(tiny_config("adsh", outer_iterations=3), blob_dataset, progress=False,
                  select=lambda s: next(scores))
    assert state.best_iteration == 2 and [s["score"] for s in state.selection] == [0.5, 0.9, 0.1]


def test_config_errors():
    with pytest.raises(ValueError, match="unknown config"):
        get_config("huge")
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"modle": "adsh"})
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            training.resolve_device("cuda")


def test_paper_config_is_the_official_schedule():
    c = get_config("paper")
    assert (c.backbone, c.image_size, c.outer_iterations, c.epochs, c.num_samples, c.batch_size) == (
        "resnet50", 224, 40, 30, 2000, 16)
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay, c.lr_step_at, c.gamma) == ("sgd", 1e-4, 0.9, 1e-4, 35, 200)
    assert c.parts == c.code_length


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_mixed_precision_loop_runs(blob_dataset):
    state = train(tiny_config("a2netpp", device="cuda", amp=True), blob_dataset, progress=False)
    assert torch.isfinite(torch.tensor([h["total"] for h in state.history])).all()


def test_defaults_are_the_cpu_preset():
    assert TrainConfig() == get_config("cpu", model="a2netpp", code_length=12)
