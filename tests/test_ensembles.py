"""One-pass ensembles: snapshots, batch invariance, deep-ensemble averaging, and refusals."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest
import torch

from conftest import random_images
from smoothbench import create_model
from smoothbench.data import ResidentImages
from smoothbench.evaluation.ensembles import parse_sizes, predict
from smoothbench.errors import UserError

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
CPU = torch.device("cpu")


def tiny(method: str = "mcdo", seed: int = 0, smoothing: str = "tanh-blur"):
    torch.manual_seed(seed)
    model = create_model("resnet18", method=method, smoothing=smoothing, width=4, num_classes=10,
                         dataset="synthetic", mean=MEAN, std=STD)
    return model.eval()


@pytest.fixture(scope="module")
def source():
    images = random_images(24, seed=1)
    labels = np.arange(24) % 10
    return ResidentImages.from_numpy("synthetic", "test", images, labels, [str(i) for i in range(10)], source="test")


@pytest.mark.parametrize("text, message", [
    ("0", "sizes must be at least 1"), ("-1", "sizes must be at least 1"), ("a", "'a' is not an integer"),
    ("", "comma-separated list"), ("1,,5", "comma-separated list"), ("1.5", "'1.5' is not an integer"),
])
def test_parse_sizes_refuses_bad_lists(text, message):
    with pytest.raises(UserError, match=f"ensembles .*{message}"):
        parse_sizes(text)


def test_parse_sizes_sorts_and_deduplicates():
    assert parse_sizes("50,1,5,5") == [1, 5, 50]


def test_snapshot_equals_separate_smaller_run(source):
    model = tiny()
    big = predict([model], source, [1, 5, 12], seed=3, batch_size=10, mc_chunk=4, device=CPU)
    small = predict([model], source, [5], seed=3, batch_size=10, mc_chunk=4, device=CPU)
    np.testing.assert_allclose(big.probs[5], small.probs[5], atol=1e-6)
    assert big.forwards == 12 * 3  # 12 passes over 3 batches, not 1 + 5 + 12
    assert big.sample_forwards == 24 * 12  # every image through 12 MC samples
    assert not np.allclose(big.probs[1], big.probs[12])  # MC samples really differ


def test_results_do_not_depend_on_batch_size_or_chunking(source):
    model = tiny()
    a = predict([model], source, [1, 7], seed=11, batch_size=24, mc_chunk=7, device=CPU)
    b = predict([model], source, [1, 7], seed=11, batch_size=5, mc_chunk=2, device=CPU)
    for k in (1, 7):  # the same numbers to the last bit: the sums run one sample at a time in every chunking
        np.testing.assert_array_equal(a.probs[k], b.probs[k])
    members = [model, tiny(seed=5)]
    deep = [predict(members, source, [1, 2], mc_samples=3, seed=2, batch_size=size, mc_chunk=chunk, device=CPU)
            for size, chunk in ((24, 3), (7, 1), (5, 2))]
    for other in deep[1:]:
        np.testing.assert_array_equal(other.probs[2], deep[0].probs[2])
    c = predict([model], source, [7], seed=12, batch_size=24, mc_chunk=7, device=CPU)
    assert not np.allclose(a.probs[7], c.probs[7])  # another seed, other masks


def test_probabilities_are_averaged_not_logits(source):
    members = [tiny("dnn", seed=0, smoothing="none"), tiny("dnn", seed=1, smoothing="none")]
    out = predict(members, source, [1, 2], batch_size=8, device=CPU)
    x = torch.stack([(source.images[i].float() / 255 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
                     for i in range(len(source))])
    with torch.no_grad():
        p0, p1 = (torch.softmax(m(x), -1).numpy() for m in members)
    np.testing.assert_allclose(out.probs[1], p0, atol=1e-5)
    np.testing.assert_allclose(out.probs[2], (p0 + p1) / 2, atol=1e-5)
    np.testing.assert_allclose(out.probs[2].sum(1), 1, atol=1e-5)


def test_members_times_mc_samples(source):
    members = [tiny("mcdo", seed=0), tiny("mcdo", seed=1)]
    out = predict(members, source, [1, 2], mc_samples=3, seed=0, batch_size=12, device=CPU)
    assert out.members == 2 and out.mc_samples == 3 and out.forwards == 2 * 3 * 2
    assert out.sample_forwards == 24 * 2 * 3  # 24 images x 2 members x 3 samples


def test_members_beyond_the_largest_size_never_run(source):
    members = [tiny("mcdo", seed=0), tiny("mcdo", seed=1), tiny("mcdo", seed=2)]
    calls = []
    members[2].register_forward_hook(lambda module, inputs, output: calls.append(1))
    out = predict(members, source, [1, 2], mc_samples=2, seed=4, batch_size=12, device=CPU)
    first_two = predict(members[:2], source, [1, 2], mc_samples=2, seed=4, batch_size=12, device=CPU)
    assert calls == [] and out.members == 3
    assert out.forwards == 2 * 2 * 2 and out.sample_forwards == 24 * 2 * 2  # 2 batches x 2 members x 2 samples
    for k in (1, 2):
        np.testing.assert_array_equal(out.probs[k], first_two.probs[k])


def test_deterministic_model_refuses_sizes_above_one(source):
    with pytest.raises(UserError, match="deterministic"):
        predict([tiny("dnn", smoothing="none")], source, [1, 5], device=CPU)


def test_deep_ensemble_larger_than_members_refused(source):
    with pytest.raises(UserError, match="only 2 models"):
        predict([tiny("dnn"), tiny("dnn", seed=1)], source, [3], device=CPU)


def test_mc_state_restored_after_predict(source):
    model = tiny()
    predict([model], source, [2], device=CPU)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # MC dropout is off again


@pytest.mark.slow
def test_compiled_predict_equals_eager(source):
    """torch.compile gives the eager probabilities; keyed masks still change from sample to sample."""
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        pytest.skip(f"torch.compile needs a C++ compiler for CPU kernels and {compiler!r} is not on PATH")
    torch.manual_seed(0)  # AlexNet: the cheapest mcdo + tanh-blur graph to compile (~20 s on a busy CPU)
    model = create_model("alexnet", method="mcdo", smoothing="tanh-blur", width=4, num_classes=10,
                         dataset="synthetic", mean=MEAN, std=STD).eval()
    with torch.no_grad():  # sharper logits, so that MC samples visibly move the probabilities
        [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].weight.mul_(50)
    args = dict(seed=3, batch_size=len(source), device=CPU)  # one batch shape: one compilation
    eager = predict([model], source, [1, 3], **args)
    compiled = predict([model], source, [1, 3], compile=True, **args)
    for k in (1, 3):
        np.testing.assert_allclose(compiled.probs[k], eager.probs[k], atol=1e-5)
    assert np.abs(compiled.probs[3] - compiled.probs[1]).max() > 1e-3  # 100x the tolerance: the samples differ


def test_long_runs_say_their_planned_work(source, monkeypatch):
    """A pass the second batch projects past the limit says how many forwards it plans (the limit lowered to 0)."""
    import smoothbench.evaluation.ensembles as ensembles

    monkeypatch.setattr(ensembles, "LONG_RUN_SECONDS", -1.0)
    with pytest.warns(ensembles.LongRunWarning, match=r"a long run: 480 sample-forwards \(24 images x 20 each\)"):
        predict([tiny()], source, [1, 20], batch_size=8, device=CPU)
    monkeypatch.setattr(ensembles, "LONG_RUN_SECONDS", 1e9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ensembles.LongRunWarning)
        predict([tiny()], source, [1, 20], batch_size=8, device=CPU)  # a short run says nothing
    assert ensembles.duration(3 * 3600 + 20 * 60 + 5) == "3 h 20 min" and ensembles.duration(45) == "45 s"


def test_diversity_sums_of_the_pass_equal_the_members_computed_one_by_one(source):
    """The running entropy and vote sums of one pass give the diversity of the stored members at every size."""
    from smoothbench.metrics.diversity import diversity_summary, diversity_sums

    out = predict([tiny()], source, [1, 2, 3, 4], seed=5, batch_size=7, mc_chunk=3, device=CPU)
    members = np.stack([k * out.probs[k] - (k - 1) * out.probs[k - 1] if k > 1 else out.probs[1]
                        for k in (1, 2, 3, 4)])  # sample k from the running means
    for k in (2, 4):
        ours, direct = diversity_summary(out.diversity(k)), diversity_summary(diversity_sums(members[:k]))
        assert ours.keys() == direct.keys()
        for name in ours:
            assert ours[name] == pytest.approx(direct[name], rel=1e-4, abs=1e-5), (k, name)
    assert np.array_equal(out.votes[4].sum(1), np.full(len(source), 4))  # every member voted once per image
