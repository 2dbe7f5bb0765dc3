"""The program the multi-process tests start with ``mpiexec -n N`` (test_distributed.py).

One launch runs many cases, because each launch costs seconds. Every rank writes what it
computed to ``OUT_DIR/rank<r>.npz`` and ``.json``; the tests compare those files with the
single-process reference they compute themselves.

    python tests/distributed_worker.py gradients OUT_DIR [cuda]   # train.accumulate on every case,
                                                                  # then train.evaluate on 23 samples
    python tests/distributed_worker.py fail RANK           # RANK raises in the middle of training
"""
import json
import os
import sys

import numpy as np

import minigrad as mg
from minigrad import distributed, optim, train
from minigrad.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from distributed_cases import evaluation_setup, gradient_cases, setup  # noqa: E402


def gradients(out_dir, device="cpu"):
    """Per case: the data-parallel gradient and loss, and the averaging recipe's gradient.
    On ``cuda`` (a GPU, or the CuPy stand-in) every third case, without the averaging recipe."""
    world = distributed.world()
    results = {}
    for case in gradient_cases() if device == "cpu" else gradient_cases()[::3]:
        model, criterion, inputs, targets = setup(case, device)
        mg.manual_seed(case["seed"])  # seeds the per-step dropout key, as in the reference
        loss = train.accumulate(model, criterion, inputs, targets, case["micro_batch_size"])
        results[case["name"] + "/loss"] = np.array(loss)
        for index, parameter in enumerate(model.parameters()):
            results[f"{case['name']}/grad{index}"] = parameter.grad.numpy()
        for index, grad in enumerate(averaged_gradients(world, case) if device == "cpu" else []):
            results[f"{case['name']}/averaged{index}"] = grad
    results["shards"] = np.array([len(range(5)[world.shard(5)]), world.size])
    np.savez(os.path.join(out_dir, f"rank{world.rank}.npz"), **results)
    if device == "cpu":
        evaluate(out_dir)  # in the same launch: each launch costs seconds


def averaged_gradients(world, case):
    """The recipe of DDP/Horovod: each rank's mean loss over its own shard, gradients averaged
    over the ranks. Shown here only to be proven different on unequal shards."""
    model, criterion, inputs, targets = setup(case)
    mine = world.shard(len(inputs))
    if mine.stop > mine.start:  # an empty shard's mean is 0/0; it contributes zero gradients
        criterion(model(inputs[mine]), targets[mine]).backward()
    grads = [p.grad.numpy() if p.grad is not None else np.zeros(p.shape) for p in model.parameters()]
    return [world.sum(grad) / world.size for grad in grads]


def evaluate(out_dir):
    world = distributed.world()
    model, images, labels = evaluation_setup()
    loader = DataLoader(TensorDataset(images, labels), batch_size=11)  # 11 + 11 + 1: empty shards at the end
    stats = train.evaluate(model, mg.nn.CrossEntropyLoss(), loader, num_classes=3)
    with open(os.path.join(out_dir, f"rank{world.rank}.json"), "w") as file:
        json.dump(stats, file)


def fail(failing_rank):
    """Training steps; one rank raises at the third step while the others wait in the Allreduce."""
    world = distributed.world()
    model, images, labels = evaluation_setup()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(images, labels), batch_size=6)
    for step, (inputs, targets) in enumerate(loader):
        if step == 2 and world.rank == failing_rank:
            raise ValueError(f"bad sample in the batch of step {step} on rank {world.rank}")
        optimizer.zero_grad()
        train.accumulate(model, mg.nn.CrossEntropyLoss(), inputs, targets)
        optimizer.step()
    print(f"rank {world.rank} finished", flush=True)


if __name__ == "__main__":
    command, arguments = sys.argv[1], sys.argv[2:]
    {"gradients": gradients, "fail": lambda rank: fail(int(rank))}[command](*arguments)
