"""``python -m minigrad train``: train a model on a real data set, with a progress bar, metrics,
a loss plot and checkpoints that resume bit for bit.

Read ``train_command`` top to bottom: options -> data -> model and optimizer -> (resume) ->
one loop over epochs, each ending with an evaluation and an atomic checkpoint. This module is
the argument handling and the loop; what the run prints and writes is in ``report.py``.

What makes resuming exact: the checkpoint holds the parameters, the optimizer's state, the
DataLoader's epoch and seed (the shuffling order of epoch e depends only on (seed, e)), and
the global random generator (it seeds each batch's dropout masks). Restoring all four puts
the process back where the uninterrupted run was, so the next batches are the same batches.

Under ``mpiexec -n N`` the same command trains data-parallel (``minigrad/distributed.py``): every
rank builds the same run, takes its shard of each batch, and ends each step with the same
parameters. Only rank 0 prints and writes files; the others wait at a barrier after each
checkpoint. Nothing in a checkpoint depends on N, so a run resumes on any number of ranks.

Read next: ``report.py`` (what the run prints and writes), then ``checkpoint.py``.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time

from . import backend, checkpoint, distributed, nn, optim, random, train
from .data import DataLoader, TensorDataset
from .data.datasets import DATASET_NAMES, load_dataset
from .models import MODEL_NAMES, build_model
from .report import (CHECKPOINT_FILE, check_output_dir, describe_written, epoch_record, print_epoch,
                     print_report, progress_bar, remove_stale_outputs, step_reporter, write_outputs)

EVAL_BATCH_SIZE = 500
# Options a resumed run may change: where and how it runs, and how long; never what it trains.
RESUME_OVERRIDES = ("epochs", "out", "device", "no_progress", "data_dir", "download", "resume")
# Options that may differ between the ranks of one data-parallel run (each its GPU, its disk).
PER_RANK_OPTIONS = ("device", "data_dir")
CONFIG_KEYS = ("dataset", "data_dir", "normalize", "model", "epochs", "batch_size", "micro_batch_size", "optimizer",
               "lr", "momentum", "weight_decay", "lr_schedule", "lr_step_size", "lr_gamma", "device", "dtype", "seed",
               "limit_train", "limit_test")
SNAPSHOT_KEYS = ("epoch", "config", "model", "optimizer", "loader", "rng", "history")  # Run.snapshot()
# What a checkpoint written before --lr-schedule existed ran with (it has no "scheduler" entry either).
CONFIG_DEFAULTS = {"lr_schedule": "constant", "lr_step_size": 10, "lr_gamma": 0.1}
# Schedules laid out over the whole run: a resumed run cannot stretch them to other --epochs.
SCHEDULES_FIXED_TO_EPOCHS = ("cosine", "onecycle")


# ----------------------------------------------------------------------------- options
def build_parser():
    """``minigrad COMMAND``: lists the commands (``--help``) and rejects unknown ones."""
    parser = argparse.ArgumentParser(prog="minigrad", description="minigrad: a small, exact deep-learning stack.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("train", help="train a model on a data set (see `python -m minigrad train --help`)",
                        add_help=False)
    return parser


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show "(default: X)" only where the help does not already say it and X means something."""

    def _get_help_string(self, action):
        if "default:" in (action.help or "") or action.default is None or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def build_train_parser():
    return add_train_options(argparse.ArgumentParser(
        prog="minigrad train", formatter_class=DefaultsHelpFormatter,
        description="Train a classifier on a real data set and report loss and (per-class) accuracy. "
                    "The defaults train an MLP on scikit-learn's 8x8 digits in seconds."))


def add_train_options(parser):
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASET_NAMES, default="digits", help="which data set")
    data.add_argument("--data-dir", default=None,
                      help="directory holding the data files (default: /usr/share/datasets/<name> when "
                           "present, else ~/.cache/minigrad/<name>)")
    data.add_argument("--download", action="store_true",
                      help="download missing MNIST/Fashion-MNIST/CIFAR-10 files (checksum-verified)")
    data.add_argument("--no-normalize", dest="normalize", action="store_false",
                      help="feed the [0, 1] pixels as they are, instead of standardising them with the "
                           "training set's per-channel mean and std")
    data.add_argument("--limit-train", type=int, default=None, metavar="N", help="use the first N training samples")
    data.add_argument("--limit-test", type=int, default=None, metavar="N", help="use the first N test samples")
    model = parser.add_argument_group("model and optimisation")
    model.add_argument("--model", choices=MODEL_NAMES, default="mlp", help="network to train")
    model.add_argument("--epochs", type=int, default=20, help="number of passes over the training set")
    model.add_argument("--batch-size", type=int, default=32, help="samples per optimizer step")
    model.add_argument("--micro-batch-size", type=int, default=None,
                       help="split each batch into micro-batches of this size (gradient accumulation; "
                            "the gradient, and so the training, is the same)")
    model.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="adam", help="update rule")
    model.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    model.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (sgd only)")
    model.add_argument("--weight-decay", type=float, default=None,
                       help="L2 (sgd, adam) or decoupled (adamw) weight decay; default: the optimizer's "
                            "(0, or 0.01 for adamw)")
    model.add_argument("--lr-schedule", choices=("constant",) + tuple(LR_SCHEDULES), default="constant",
                       help="learning-rate schedule (optim.lr_scheduler): step = StepLR (x lr-gamma every "
                            "lr-step-size epochs), exponential = ExponentialLR (x lr-gamma each epoch), cosine = "
                            "CosineAnnealingLR over the epochs, onecycle = OneCycleLR up to --lr and down, per batch")
    model.add_argument("--lr-step-size", type=int, default=10, help="epochs between lr drops (step only)")
    model.add_argument("--lr-gamma", type=float, default=0.1, help="lr factor (step and exponential only)")
    run = parser.add_argument_group("run")
    run.add_argument("--device", default="cpu",
                     help="cpu, cuda or cuda:N (under mpiexec, cuda gives each rank on a machine its own GPU)")
    run.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="parameter and data dtype")
    run.add_argument("--seed", type=int, default=0, help="seeds initialisation, data order and dropout")
    run.add_argument("--out", default=None, metavar="DIR",
                     help="write metrics.json, checkpoint.npz and loss.png here (default: the --resume "
                          "directory, else nothing is written)")
    run.add_argument("--resume", default=None, metavar="DIR",
                     help="continue the run whose checkpoint is in DIR, to --epochs epochs in total")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (also off when not a terminal)")
    return parser


def explicit_options(argv):
    """The options the user actually typed (a resumed run must not silently change them):
    parse again with every default replaced by a marker, then drop what still holds it."""
    not_given = object()
    parser = build_train_parser()
    parser.set_defaults(**{name: not_given for name in vars(parser.parse_args([]))})
    return {name: value for name, value in vars(parser.parse_args(argv)).items() if value is not not_given}


def validate(parser, args):
    """argparse-style errors (exit status 2) for values out of range, before anything runs."""
    positive = ["epochs", "batch_size", "micro_batch_size", "limit_train", "limit_test"]
    for name in positive:
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"argument --{name.replace('_', '-')}: expected a positive int, got {value}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        parser.error(f"argument --lr: expected a positive number, got {args.lr}")
    if not 0 <= args.momentum < 1:
        parser.error(f"argument --momentum: expected a number in [0, 1), got {args.momentum}")
    if args.weight_decay is not None and not args.weight_decay >= 0:
        parser.error(f"argument --weight-decay: expected a number >= 0, got {args.weight_decay}")
    if args.lr_step_size <= 0:
        parser.error(f"argument --lr-step-size: expected a positive int, got {args.lr_step_size}")
    if not 0 < args.lr_gamma <= 1:
        parser.error(f"argument --lr-gamma: expected a number in (0, 1], got {args.lr_gamma}")
    if args.seed < 0:
        parser.error(f"argument --seed: expected a non-negative int, got {args.seed}")
    try:
        args.device = backend.parse_device(distributed.world().device_for_this_rank(args.device))
    except (ValueError, RuntimeError) as error:
        parser.error(f"argument --device: {error}")


def resumed_config(parser, args, explicit):
    """The checkpoint's config, with the options a resumed run may change taken from ``args``."""
    path = os.path.join(args.resume, CHECKPOINT_FILE)
    try:
        state = checkpoint.load(path)
    except (OSError, ValueError) as error:
        parser.error(f"argument --resume: {error}")
    if isinstance(state, dict) and isinstance(state.get("config"), dict):
        state["config"] = {**CONFIG_DEFAULTS, **state["config"]}
    check_snapshot(parser, state, path)
    config = dict(state["config"])
    if "epochs" in explicit and config["lr_schedule"] in SCHEDULES_FIXED_TO_EPOCHS and args.epochs != config["epochs"]:
        parser.error(f"argument --epochs: the {config['lr_schedule']} schedule was laid out over "
                     f"{config['epochs']} epochs; a resumed run must keep them (or start a new run)")
    for name, value in explicit.items():
        if name in RESUME_OVERRIDES or name not in config:
            continue
        if value != config[name]:
            parser.error(f"argument --{name.replace('_', '-')}: {value!r} differs from the checkpoint's "
                         f"{config[name]!r}; a resumed run keeps the training settings it started with")
    for name in ("epochs", "device", "data_dir"):
        if name in explicit:
            config[name] = getattr(args, name)
    return config, state


def check_snapshot(parser, state, path):
    """Every entry a resumed run reads, found now and named with the file (not a KeyError later)."""
    missing = [key for key in SNAPSHOT_KEYS if key not in state] if isinstance(state, dict) else ["config"]
    if missing:
        parser.error(f"argument --resume: {path}: the checkpoint has no {missing[0]!r} entry "
                     f"(a run's checkpoint holds {', '.join(SNAPSHOT_KEYS)}); was it written by minigrad train?")
    config = state["config"]
    missing = [key for key in CONFIG_KEYS if key not in config] if isinstance(config, dict) else ["dataset"]
    if missing:
        parser.error(f"argument --resume: {path}: the checkpoint's config has no {missing[0]!r} entry "
                     f"(expected {', '.join(CONFIG_KEYS)})")


# ----------------------------------------------------------------------------- building blocks
def make_optimizer(config, parameters):
    extra = {} if config["weight_decay"] is None else {"weight_decay": config["weight_decay"]}
    if config["optimizer"] == "sgd":
        return optim.SGD(parameters, lr=config["lr"], momentum=config["momentum"], **extra)
    optimizer_class = optim.Adam if config["optimizer"] == "adam" else optim.AdamW
    return optimizer_class(parameters, lr=config["lr"], **extra)


# --lr-schedule name -> the scheduler built for a run, and whether it steps per batch (else per epoch)
LR_SCHEDULES = {
    "step": (lambda config, optimizer, steps: optim.lr_scheduler.StepLR(
        optimizer, step_size=config["lr_step_size"], gamma=config["lr_gamma"]), False),
    "exponential": (lambda config, optimizer, steps: optim.lr_scheduler.ExponentialLR(
        optimizer, gamma=config["lr_gamma"]), False),
    "cosine": (lambda config, optimizer, steps: optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config["epochs"]), False),
    "onecycle": (lambda config, optimizer, steps: optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config["lr"], epochs=config["epochs"], steps_per_epoch=steps), True),
}


SCHEDULE_OPTIONS = {"constant": (), "step": ("lr_step_size", "lr_gamma"), "exponential": ("lr_gamma",),
                    "cosine": (), "onecycle": ()}


def make_scheduler(config, optimizer, steps_per_epoch):
    """The run's lr scheduler (None for a constant lr) and whether it steps once per batch."""
    if config["lr_schedule"] == "constant":
        return None, False
    build, per_batch = LR_SCHEDULES[config["lr_schedule"]]
    return build(config, optimizer, steps_per_epoch), per_batch


def load_data(config, download):
    split = load_dataset(config["dataset"], config["data_dir"], download=download)
    split = split.limited(config["limit_train"], config["limit_test"])
    if config["normalize"]:
        split = split.standardized()
    dtype = backend.parse_dtype(config["dtype"])
    train_arrays = (split.train_images.astype(dtype, copy=False), split.train_labels)
    test_arrays = (split.test_images.astype(dtype, copy=False), split.test_labels)
    return split, train_arrays, test_arrays


# ----------------------------------------------------------------------------- the command
@dataclasses.dataclass
class Run:
    """Everything one training run holds; a checkpoint is a snapshot of it."""

    config: dict
    split: object          # the DatasetSplit (class names, image shape)
    model: object
    optimizer: object
    criterion: object
    train_loader: DataLoader
    test_loader: DataLoader
    scheduler: object = None            # an optim.lr_scheduler, or None for a constant lr
    schedule_per_batch: bool = False    # OneCycleLR steps after every batch, the others after every epoch
    history: list = dataclasses.field(default_factory=list)   # one record per finished epoch

    def snapshot(self):
        return {"epoch": len(self.history), "config": self.config, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "loader": self.train_loader.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "rng": random.get_state(), "history": self.history}

    def restore(self, state, source):
        """Put a snapshot back; model and optimizer are validated before anything changes.
        The scheduler was built first (as on the first run), then the optimizer's state and the
        scheduler's are loaded over it, PyTorch's order: the lr and momentum are the saved ones."""
        checkpoint.load_model_state(self.model, state["model"], source)  # names and shapes checked first
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            if state.get("scheduler") is None:
                raise ValueError(f"{source}: the checkpoint has no lr scheduler state for its "
                                 f"{self.config['lr_schedule']} schedule")
            self.scheduler.load_state_dict(state["scheduler"])
        self.train_loader.load_state_dict(state["loader"])
        random.set_state(state["rng"])  # dropout masks continue where they stopped
        self.history = list(state["history"])


def build_run(config, download):
    """Seed, load the data, build model, optimizer and loaders: in this order, on every run,
    so a resumed run consumes the random generator exactly as the original did."""
    random.manual_seed(config["seed"])
    split, train_arrays, test_arrays = load_data(config, download)
    model = build_model(config["model"], split.image_shape, split.num_classes)
    model.to(config["dtype"]).to(config["device"])
    train_loader = DataLoader(TensorDataset(*train_arrays), batch_size=config["batch_size"], shuffle=True,
                              seed=config["seed"], device=config["device"])
    test_loader = DataLoader(TensorDataset(*test_arrays), batch_size=EVAL_BATCH_SIZE, device=config["device"])
    optimizer = make_optimizer(config, model.parameters())
    scheduler, per_batch = make_scheduler(config, optimizer, len(train_loader))
    return Run(config, split, model, optimizer, nn.CrossEntropyLoss(), train_loader, test_loader, scheduler, per_batch)


def train_epoch(run, epoch, show_progress, world):
    """Train one epoch (0-based ``epoch``), evaluate, and return its metrics record.
    Under MPI the ranks first check that they run the same configuration (ranks that were
    given different options stop, the message naming them)."""
    world.check_same_plan({name: value for name, value in run.config.items() if name not in PER_RANK_OPTIONS})
    started = time.perf_counter()
    bar = progress_bar(len(run.train_loader), f"epoch {epoch + 1}/{run.config['epochs']}", show_progress)
    step_losses, last_lr = [], [run.optimizer.param_groups[0]["lr"]]
    report_step = step_reporter(bar, step_losses)

    def on_step(step, loss, batch_size):
        report_step(step, loss, batch_size)
        last_lr[0] = run.optimizer.param_groups[0]["lr"]  # the lr this step used (for metrics.json)
        if run.schedule_per_batch:
            run.scheduler.step()  # after optimizer.step(), as PyTorch wants

    try:
        train_stats = train.train_one_epoch(run.model, run.criterion, run.optimizer, run.train_loader,
                                            run.config["micro_batch_size"], epoch=epoch, on_step=on_step,
                                            world=world)
    finally:
        if bar is not None:
            bar.close()
    if run.scheduler is not None and not run.schedule_per_batch:
        run.scheduler.step()
    test_stats = train.evaluate(run.model, run.criterion, run.test_loader, run.split.num_classes, world=world)
    if not math.isfinite(test_stats["loss"]):  # finite weights can still overflow the logits
        raise train.diverged(epoch, f"the test loss is {test_stats['loss']}")
    return {**epoch_record(epoch + 1, train_stats, test_stats, step_losses, time.perf_counter() - started),
            "lr": last_lr[0]}


def describe(run, resumed_after, world):
    config = run.config
    micro = f" in micro-batches of {config['micro_batch_size']}" if config["micro_batch_size"] else ""
    resumed = f", resumed after epoch {resumed_after}" if resumed_after else ""
    schedule = f" ({config['lr_schedule']} schedule)" if config["lr_schedule"] != "constant" else ""
    text = (f"training {config['model']} on {run.split.name}: {len(run.train_loader.dataset)} train / "
            f"{len(run.test_loader.dataset)} test images {run.split.image_shape}, {config['optimizer']} lr "
            f"{config['lr']}{schedule}, batch {config['batch_size']}{micro}, {config['device']} {config['dtype']}"
            f"{resumed}")
    return text + describe_ranks(config["batch_size"], world)


def describe_ranks(batch_size, world):
    """How each batch is shared out; more ranks than samples is allowed, and said."""
    if not world.is_distributed:
        return ""
    sizes = distributed.shard_sizes(batch_size, world.size)
    text = f"\ndata parallel over {world.size} ranks: samples per rank in each batch {sizes}"
    idle = sizes.count(0)
    if idle:
        text += (f"\nnote: {world.size} ranks for batches of {batch_size}: {idle} rank(s) get no sample and only "
                 f"take part in the reductions; the training is the same, the extra ranks only cost")
    return text


def train_command(parser, argv):
    args = parser.parse_args(argv)
    validate(parser, args)
    explicit = explicit_options(argv)
    if "momentum" in explicit and args.optimizer != "sgd":
        parser.error(f"argument --momentum: only SGD uses momentum, got --optimizer {args.optimizer}")
    world = distributed.world()
    say = print if world.rank == 0 else (lambda *args, **kwargs: None)  # one report, not one per rank
    config, state = {name: getattr(args, name) for name in CONFIG_KEYS}, None
    if args.resume:
        config, state = resumed_config(parser, args, explicit)
        if len(state["history"]) >= config["epochs"]:
            say(f"nothing to do: {os.path.join(args.resume, CHECKPOINT_FILE)} has already trained "
                f"{len(state['history'])} epochs (--epochs {config['epochs']}); pass a larger --epochs to continue")
            return 0
    for name in ("lr_step_size", "lr_gamma"):
        if name in explicit and name not in SCHEDULE_OPTIONS[config["lr_schedule"]]:
            parser.error(f"argument --{name.replace('_', '-')}: the {config['lr_schedule']} lr schedule does not "
                         f"use it (step uses --lr-step-size and --lr-gamma, exponential --lr-gamma)")
    out_dir = args.out or args.resume
    if out_dir and world.rank == 0:  # the rank that writes checks now, not after an epoch of training
        try:
            check_output_dir(out_dir)
        except ValueError as error:
            parser.error(f"argument {'--out' if args.out else '--resume'}: {error}")
    try:
        run = build_run(config, args.download)
    except (OSError, ValueError) as error:  # missing or corrupt data files, failed downloads
        print(f"minigrad train: error: {error}", file=sys.stderr)
        return 1
    if state is not None:
        try:
            run.restore(state, os.path.join(args.resume, CHECKPOINT_FILE))
        except ValueError as error:
            parser.error(f"argument --resume: {error}")
    if out_dir and world.rank == 0:
        remove_stale_outputs(out_dir)
    say(describe(run, len(run.history), world))
    written = []
    for epoch in range(len(run.history), config["epochs"]):
        try:
            record = train_epoch(run, epoch, show_progress=not args.no_progress and world.rank == 0, world=world)
        except train.TrainingDiverged as error:  # the same on every rank: all stop here, nothing written
            say(f"minigrad train: error: {error}{what_is_kept(out_dir, run.history)}", file=sys.stderr)
            return 1
        run.history.append(record)
        if world.rank == 0:
            print_epoch(record, config["epochs"])
        if out_dir:
            if world.rank == 0:  # every rank holds the same state; one writes it
                try:
                    written = write_outputs(out_dir, config, run.split.class_names, run.history, run.snapshot())
                except OSError as error:  # disk full: the message names the file; the previous one is intact
                    print(f"minigrad train: error: {error}", file=sys.stderr)
                    return 1
            world.barrier()  # nobody runs ahead of a checkpoint that may still fail to be written
    if world.rank == 0:
        print_report(run.history[-1], run.split.class_names, len(run.test_loader.dataset))
        if written:
            print(describe_written(out_dir, written))
    return 0


def what_is_kept(out_dir, history):
    """After a failed epoch: which good files remain (a diverged run never overwrites them)."""
    if not out_dir:
        return ""
    if not history:
        return f"; nothing was written to {out_dir}"
    return f"; {CHECKPOINT_FILE} in {out_dir} still holds epoch {len(history)}, the last good one"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] != ["train"]:
        build_parser().parse_args(argv)  # --help, or an argparse error naming the valid commands
        return 2
    # Training frees and reallocates the same activation-sized arrays every step: ask glibc to
    # keep freed blocks for reuse (backend.py says why; ~a quarter of a CPU step for LeNet).
    # Process-wide, so it is done here, in the command, never on import.
    # MINIGRAD_KEEP_FREED_MEMORY=0 in the environment turns it off.
    backend.keep_freed_host_memory_for_reuse()
    world = distributed.world()
    with world.abort_on_error():  # under MPI, one rank failing ends the job instead of hanging it
        status = train_command(build_train_parser(), argv[1:])
        if status and world.is_distributed:
            raise SystemExit(status)
    return status
