"""Checkpoints: exact round trips, atomic writes, clear errors, and exact continuation of training."""
import json
import os
import zipfile

import numpy as np
import pytest

import minigrad as mg
from minigrad import checkpoint, nn, optim, random
from minigrad.models import LeNet, MLP


def files_in(directory):
    return sorted(os.listdir(directory))


def test_round_trip_keeps_values_and_types_exactly(tmp_path, device):
    rng_state = np.random.default_rng(123).bit_generator.state  # 128-bit ints inside
    state = {
        "weights": mg.tensor(np.arange(6, dtype=np.float64).reshape(2, 3) / 7, device=device),
        "float32": np.float32([1.1, np.nan, -np.inf]),
        "step": np.int64(7), "ratio": 0.1 + 0.2, "flag": True, "nothing": None, "name": "adam",
        "by_index": {0: {"exp_avg": np.ones(3)}, 5: {"step": 2}},
        "betas": (0.9, 0.999), "history": [1.5, float("nan"), [2, 3]], "rng": rng_state,
        "__dunder": "kept",
    }
    path = tmp_path / "state.npz"
    checkpoint.save(path, state)
    loaded = checkpoint.load(path)
    np.testing.assert_array_equal(loaded["weights"], np.arange(6, dtype=np.float64).reshape(2, 3) / 7)
    assert loaded["weights"].dtype == np.float64 and loaded["float32"].dtype == np.float32
    np.testing.assert_array_equal(loaded["float32"], np.float32([1.1, np.nan, -np.inf]))
    assert type(loaded["step"]) is np.int64 and loaded["step"] == 7
    assert loaded["ratio"] == 0.1 + 0.2 and loaded["flag"] is True and loaded["nothing"] is None
    assert set(loaded["by_index"]) == {0, 5} and loaded["by_index"][5] == {"step": 2}
    assert loaded["betas"] == (0.9, 0.999) and isinstance(loaded["betas"], tuple)
    assert loaded["history"][0] == 1.5 and np.isnan(loaded["history"][1]) and loaded["history"][2] == [2, 3]
    assert loaded["rng"] == rng_state and loaded["__dunder"] == "kept"


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, {"epoch": 1})
    with pytest.raises(TypeError, match="checkpoint: cannot store a value of type object"):
        checkpoint.save(path, {"epoch": 2, "bad": object()})
    assert files_in(tmp_path) == ["checkpoint.npz"]
    assert checkpoint.load(path) == {"epoch": 1}  # the earlier checkpoint survived the failed save


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.npz: no checkpoint there"):
        checkpoint.load(tmp_path / "nowhere.npz")


def test_truncated_file_is_named(tmp_path):
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, {"weights": np.ones(1000)})
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"checkpoint\.npz: corrupt or truncated checkpoint"):
        checkpoint.load(path)


def test_an_npz_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, x=np.ones(2))
    with pytest.raises(ValueError, match=r"plain\.npz: not a minigrad checkpoint \(no __meta__ entry\)"):
        checkpoint.load(path)
    np.save(tmp_path / "array.npy", np.ones(2))
    with pytest.raises(ValueError, match=r"array\.npy: corrupt or truncated checkpoint .*not an \.npz archive"):
        checkpoint.load(tmp_path / "array.npy")


def test_wrong_format_and_version_are_rejected(tmp_path):
    for meta, message in (({"format": "other"}, r"format: expected 'minigrad-checkpoint', got 'other'"),
                          ({"format": "minigrad-checkpoint", "version": 99}, r"version: expected 1, got 99")):
        path = tmp_path / "bad.npz"
        np.savez(path, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        with pytest.raises(ValueError, match=message):
            checkpoint.load(path)


def test_pickled_content_is_never_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __meta__=np.zeros(1, np.uint8), payload=np.array([{"a": 1}], dtype=object))
    with zipfile.ZipFile(path) as archive:
        assert "payload.npy" in archive.namelist()
    with pytest.raises(ValueError, match=r"evil\.npz: corrupt or truncated checkpoint .*allow_pickle=False"):
        checkpoint.load(path)


# ----------------------------------------------------------------------------- models
def test_a_checkpoint_from_a_different_model_names_the_parameter(tmp_path):
    mg.manual_seed(0)
    path = tmp_path / "mlp.npz"
    checkpoint.save(path, {"model": MLP(64, 10).state_dict()})
    saved = checkpoint.load(path)["model"]
    narrower = MLP(64, 10, hidden_features=128)
    before = narrower.fc1.weight.numpy().copy()
    with pytest.raises(ValueError, match=r"mlp\.npz: parameter 'fc1\.weight': expected shape \(128, 64\), "
                                         r"got \(256, 64\)"):
        checkpoint.load_model_state(narrower, saved, str(path))
    np.testing.assert_array_equal(narrower.fc1.weight.numpy(), before)  # nothing was half-loaded
    with pytest.raises(ValueError, match=r"parameter 'conv1\.weight' of the model is missing"):
        checkpoint.load_model_state(LeNet(1, 10, 8), saved)
    with pytest.raises(ValueError, match=r"parameter 'fc2\.weight' in the checkpoint does not exist"):
        checkpoint.load_model_state(nn.Sequential(), {"fc2.weight": np.ones(2)})


@pytest.mark.parametrize("make_optimizer", [
    lambda params: optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3),
    lambda params: optim.Adam(params, lr=1e-2),
], ids=["sgd-momentum", "adam"])
def test_saved_and_reloaded_training_continues_bit_for_bit(tmp_path, make_optimizer):
    """Two more steps after a save/load round trip equal two more steps without one."""
    x = np.random.default_rng(1).standard_normal((16, 1, 8, 8))
    y = np.arange(16) % 10

    def step(model, optimizer):
        optimizer.zero_grad()
        nn.CrossEntropyLoss()(model(mg.tensor(x)), mg.tensor(y)).backward()
        optimizer.step()

    mg.manual_seed(3)
    model = MLP(64, 10, dropout=0.5).double()
    optimizer = make_optimizer(model.parameters())
    step(model, optimizer)
    checkpoint.save(tmp_path / "c.npz", {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                         "rng": random.get_state()})
    for _ in range(2):
        step(model, optimizer)

    mg.manual_seed(99)  # a different start: everything must come from the checkpoint
    resumed = MLP(64, 10, dropout=0.5).double()
    resumed_optimizer = make_optimizer(resumed.parameters())
    state = checkpoint.load(tmp_path / "c.npz")
    checkpoint.load_model_state(resumed, state["model"])
    resumed_optimizer.load_state_dict(state["optimizer"])
    random.set_state(state["rng"])
    for _ in range(2):
        step(resumed, resumed_optimizer)
    for (name, expected), (_, actual) in zip(model.named_parameters(), resumed.named_parameters()):
        assert np.array_equal(actual.numpy(), expected.numpy()), name
