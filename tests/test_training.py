import dataclasses
import functools
import math
import shutil

import numpy as np
import pytest
import torch

import a2hlib.training as training
from a2hlib.codes import binarize
from a2hlib.datasets import ArrayDataset, BatchFeed, denormalize, train_transform
from a2hlib.losses import hashing_losses, schedule, similarity_matrix
from a2hlib.metrics import mean_average_precision
from a2hlib.models import encode
from a2hlib.training import (OuterIterationSampler, TrainConfig, get_config, load_checkpoint, train,
                             update_database_codes)


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
    # compile changes how a step runs, not what it computes: a finished run is reused as it is
    again = train(tiny_config("adsh", outer_iterations=1, compile=True), blob_dataset, checkpoint=tmp_path / "c.pt",
                  progress=False)
    assert again.iteration == 1


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
    assert c.parts == c.code_length and c.compile and c.num_workers == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_mixed_precision_loop_runs(blob_dataset):
    state = train(tiny_config("a2netpp", device="cuda", amp=True), blob_dataset, progress=False)
    assert torch.isfinite(torch.tensor([h["total"] for h in state.history])).all()


def test_defaults_are_the_cpu_preset():
    assert TrainConfig() == get_config("cpu", model="a2netpp", code_length=12)


# ------------------------------------------------------------------------------- the fast loop
class Positions(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def test_one_loader_sampler_draws_what_per_iteration_loaders_drew():
    n, m, batch, epochs = 23, 10, 4, 3
    old_gen, new_gen = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    sampler = OuterIterationSampler(n, m, batch, epochs)
    for _ in range(3):  # outer iterations, as the loop before one DataLoader per run drew them
        sample = torch.randperm(n, generator=old_gen)[:m]
        old_batches = [b.tolist() for _ in range(epochs) for b in torch.utils.data.DataLoader(
            torch.utils.data.Subset(Positions(n), sample.tolist()), batch_size=batch, shuffle=True,
            generator=old_gen)]
        assert torch.equal(sampler.draw(new_gen), sample)
        assert [indices for _, indices in sampler] == old_batches
        assert [sample[r].tolist() for r in sampler.rows] == old_batches
        assert len(sampler) == epochs * sampler.steps_per_epoch == epochs * 3
        assert torch.equal(old_gen.get_state(), new_gen.get_state())
    seeds = list(sampler.seeds)
    assert seeds[1] == seeds[0] + 1 and len(set(seeds)) == len(seeds)


def test_one_loader_with_persistent_workers_gives_the_same_batches():
    """Augmentation seeded per batch: workers (persistent across outer iterations) or not, the
    same uint8 crops arrive in the same order."""
    rng = np.random.default_rng(0)
    ds = ArrayDataset(rng.integers(0, 256, (20, 30, 26, 3), dtype=np.uint8), np.arange(20) % 4,
                      train_transform(16, scale=(0.2, 1.0)))
    sampler = OuterIterationSampler(len(ds), 12, 5, 2)
    got = {}
    for workers in (0, 2):
        gen = torch.Generator().manual_seed(3)
        loader = torch.utils.data.DataLoader(BatchFeed(ds), batch_size=None, sampler=sampler, num_workers=workers,
                                             persistent_workers=workers > 0)
        got[workers] = []
        for _ in range(2):
            sampler.draw(gen)
            got[workers] += [(images, indices) for images, indices in loader]
    assert len(got[0]) == 2 * 2 * 3 and got[0][0][0].dtype == torch.uint8
    for (a, i), (b, j) in zip(got[0], got[2]):
        assert torch.equal(a, b) and torch.equal(i, j)


def reference_train(config, database):
    """The loop as it was before the fast path (a DataLoader per outer iteration, every loss term
    read with float() and u copied to the host at every step), with the official rules: B starts
    real-valued, phase 2 from ⌊T/2⌋, the decorrelation term divided by the configured batch size."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = training._new_model(config)
    optimizer = training._optimizer(config, model)
    n, k, m = len(database), config.code_length, config.num_samples
    B = torch.randn(n, k, generator=generator)
    history = []
    for it in range(config.outer_iterations):
        for group in optimizer.param_groups:
            group["lr"] = training._lr_at(config, it)
        weights = schedule(config.model, 2 if it >= config.outer_iterations // 2 else 1)
        sample = torch.randperm(n, generator=generator)[:m]
        S = similarity_matrix(database.targets[sample], database.targets, config.soft_similarity)
        U = torch.zeros(m, k)
        row_of = torch.full((n,), -1, dtype=torch.long)
        row_of[sample] = torch.arange(m)
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(database, sample.tolist()),
                                             batch_size=config.batch_size, shuffle=True, generator=generator)
        model.train()
        for epoch in range(config.epochs):
            for images, db_index in loader:
                rows = row_of[db_index]
                outputs = model.forward_all(images)
                target = denormalize(images) if "image" in outputs else None
                terms = hashing_losses(outputs, B, S[rows], db_index, weights, config.gamma, target,
                                       batch_size=config.batch_size)
                optimizer.zero_grad(set_to_none=True)
                terms["total"].backward()
                optimizer.step()
                U[rows] = outputs["u"].detach().float().cpu()
                history.append({"iteration": it, "epoch": epoch, **{t: float(v.detach()) for t, v in terms.items()}})
        B = update_database_codes(B, U, sample, S, config.gamma)
    return B, history, model


def test_fast_loop_records_exactly_what_the_plain_loop_computed(blob_dataset):
    config = tiny_config("a2netpp", num_samples=28, seed=4)  # 28 = 2 full batches of 12 + 4
    B, history, net = reference_train(config, blob_dataset)
    state = train(config, blob_dataset, progress=False)
    assert len(history) == 2 * 2 * 3 and {"rec", "dec", "image"} <= set(history[0])
    assert state.history == history  # every step's row, same keys and bit-identical values
    assert torch.equal(state.B, B)
    assert all(torch.equal(a, b) for a, b in zip(state.model.state_dict().values(), net.state_dict().values()))


def test_compile_option_trains_like_eager(blob_dataset, device, monkeypatch):
    """torch.compile of the forward pass and losses. On CPU with the 'aot_eager' backend (Dynamo
    capture and AOTAutograd, then the same aten kernels, so bit-identical results; inductor works on
    CPU too but needs minutes to compile even this model cold: `make bench-train` runs it on the
    paper model); with A2H_TEST_DEVICE=cuda the default backend (inductor, Triton), approximately."""
    if device.type == "cpu":
        monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    config = tiny_config("a2net", device=str(device), amp=False, num_samples=24, epochs=1)
    eager = train(config, blob_dataset, progress=False)
    compiled = train(dataclasses.replace(config, compile=True), blob_dataset, progress=False)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2  # one per phase: it ran compiled
    assert [list(r) for r in compiled.history] == [list(r) for r in eager.history]
    pairs = list(zip(eager.model.state_dict().values(), compiled.model.state_dict().values()))
    if device.type == "cpu":
        assert compiled.history == eager.history and torch.equal(compiled.B, eager.B)
        assert all(torch.equal(a, b) for a, b in pairs)
    else:  # other kernels (fused, TF32 convolutions): the same run up to rounding
        for a, b in zip(eager.history, compiled.history):
            assert b["total"] == pytest.approx(a["total"], rel=1e-2, abs=1e-4)
        assert all(torch.allclose(a.float(), b.float(), rtol=1e-2, atol=1e-2) for a, b in pairs)


def test_fast_path_trains_on_the_device(device):
    """uint8 crops normalised on the device; on CUDA also channels_last, pinned memory, bf16."""
    rng = np.random.default_rng(1)
    labels = np.arange(24) % 3
    images = rng.integers(0, 60, (24, 40, 40, 3), dtype=np.uint8)
    for i, c in enumerate(labels):
        images[i, :, :, c] += 190  # each class one bright channel
    ds = ArrayDataset(images, labels, train_transform(32, scale=(0.5, 1.0)))
    config = tiny_config("adsh", device=str(device), num_samples=24, outer_iterations=2, epochs=3, batch_size=8, lr=1e-2)
    state = train(config, ds, progress=False)
    assert len(state.history) == 2 * 3 * 3
    assert all(math.isfinite(r["total"]) for r in state.history)
    codes = binarize(encode(state.model, ArrayDataset(images, labels, image_size=32), device=device))
    assert mean_average_precision(codes, state.B, ds.targets, ds.targets) > 0.9


def test_step_never_waits_for_the_gpu(device):
    """CUDA only: every operation of a training step (and of U's update and the loss log) runs
    under torch.cuda.set_sync_debug_mode('error'), which raises on any host synchronisation."""
    if device.type != "cuda":
        pytest.skip("host synchronisation is a CUDA matter: run with A2H_TEST_DEVICE=cuda")
    config = tiny_config("a2netpp", device=str(device))
    model = training._new_model(config).to(device).to(memory_format=torch.channels_last)
    step = training.TrainStep(model, training._optimizer(config, model), config, device)
    B = binarize(torch.randn(48, 8)).to(device)
    S = torch.rand(48, 48).to(device)
    rows = torch.arange(12).to(device)
    U = torch.zeros(48, 8, device=device)
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8).pin_memory()
    logged = []
    step(images, B, S[rows], rows, schedule("a2netpp", 1))  # warm-up: cuDNN autotuning, allocations
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            terms, u = step(images, B, S[rows], rows, schedule("a2netpp", 1))
            U[rows] = u.float()
            logged.append(torch.stack([v.detach() for v in terms.values()]))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(torch.stack(logged)).all()


def test_official_initialisation_and_schedule(blob_dataset):
    """B starts as real-valued randn (init_codes="randn"), or as its signs; the attention stack's
    convs follow kaiming_normal_(fan_out), much larger than PyTorch's default; phase 2 starts at
    ⌊T/2⌋; the decorrelation term divides by the configured batch size."""
    from a2hlib import losses
    from a2hlib.models import attention_stack
    g = torch.Generator().manual_seed(0)
    config = tiny_config("a2net", outer_iterations=1, epochs=1, num_samples=12)
    first = train(config, blob_dataset, progress=False)
    signs = train(dataclasses.replace(config, init_codes="sign"), blob_dataset, progress=False)
    # the first step's quantisation term sees B itself: real values give another number than their signs
    start = torch.randn(len(blob_dataset), config.code_length, generator=torch.Generator().manual_seed(config.seed))
    assert first.history[0]["quant"] != signs.history[0]["quant"] and not torch.equal(start, binarize(start))
    torch.manual_seed(1)
    official, default = attention_stack(64, 4, "official"), attention_stack(64, 4, "pytorch")
    conv = lambda stack: [m for m in stack.modules() if isinstance(m, torch.nn.Conv2d)][-1]  # noqa: E731
    assert conv(official).weight.std().item() > 2 * conv(default).weight.std().item()
    assert conv(official).weight.std().item() == pytest.approx(math.sqrt(2 / 4), rel=0.3)  # fan_out = M·1·1 = 4
    assert [losses.phase2_from(t) for t in (1, 2, 3, 12, 40)] == [0, 1, 1, 6, 20]
    u = torch.randn(5, 3, generator=g)
    assert losses.decorrelation_loss(u, batch_size=8) == pytest.approx(
        float(((u.t() @ u - 8 * torch.eye(3)) ** 2).mean() / 8 / 3))
    assert first.B.abs().eq(1).all()  # one outer iteration: the DCC update made B binary
    with pytest.raises(ValueError, match="init_codes must be one of"):
        TrainConfig(init_codes="zeros")
