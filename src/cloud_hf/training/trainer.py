"""The recipes' ``Trainer``: optimizer from ``args.optim`` with layer-wise lr-decay groups, collators, callbacks."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import (
    DataCollatorForLanguageModeling,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    PreTrainedModel,
    Trainer,
)
from transformers.trainer import TRAINING_ARGS_NAME

from accelerate import PartialState
from cloud_hf.errors import CloudConfigError
from cloud_hf.training.arguments import CloudTrainingArguments
from cloud_hf.training.data import TaskSpec
from cloud_hf.training.metrics import metrics_function

BLOCK_PATTERN = re.compile(r"\.layers?\.(\d+)\.")  # cloud.layers.3. (cloud-hf) or encoder.layer.3. (BERT)


def start_run(training_args: CloudTrainingArguments) -> PartialState:
    """Set up the (possibly distributed) process state and logging; returns the state.

    The state is created on CPU when ``use_cpu`` is set or no GPU exists, so that processes started by
    ``accelerate launch --multi_gpu --num_processes N`` on a CPU machine join one gloo group (a state created
    first without ``cpu=True`` would leave each process on its own). INFO logs come from the main process only.
    """
    state = PartialState(cpu=bool(training_args.use_cpu) or not torch.cuda.is_available())
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if state.is_main_process else logging.WARNING)
    return state


def layer_depth(parameter_name: str, num_layers: int) -> int:
    """Depth of a parameter: 0 for embeddings, i + 1 for encoder block i, num_layers + 1 for heads."""
    if ".embeddings." in f".{parameter_name}":
        return 0
    block = BLOCK_PATTERN.search(f".{parameter_name}")
    return int(block.group(1)) + 1 if block else num_layers + 1


def layerwise_parameter_groups(model: PreTrainedModel, learning_rate: float, decay: float, weight_decay: float,
                               decay_parameters: set[str]) -> list[dict[str, Any]]:
    """Parameter groups where block i's learning rate is ``learning_rate * decay ** (num_layers + 1 - depth)``.

    The head trains at the full rate, the embeddings at the smallest; only ``decay_parameters`` (Trainer's
    ``get_decay_parameter_names``: no biases, no norms) get weight decay.
    """
    num_layers = model.config.num_hidden_layers
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        depth = layer_depth(name, num_layers)
        decays = name in decay_parameters
        group = groups.setdefault((depth, decays), {
            "params": [], "weight_decay": weight_decay if decays else 0.0,
            "lr": learning_rate * decay ** (num_layers + 1 - depth)})
        group["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]


class EpochWeightedSampler(torch.utils.data.WeightedRandomSampler):
    """``WeightedRandomSampler`` whose draws depend only on ``seed`` and the epoch (``set_epoch``, which ``Trainer``
    calls through ``accelerate`` each epoch): a run resumed in epoch k draws epoch k's rows as the uninterrupted
    run did, so its skipped batches and the ones after are the same."""

    def __init__(self, weights: torch.Tensor, num_samples: int, seed: int) -> None:
        super().__init__(weights, num_samples=num_samples, replacement=True)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the rows of ``epoch`` next."""
        self.generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(epoch))


class CloudTrainer(Trainer):
    """``Trainer`` that scores one named model output and optionally decays learning rates layer by layer.

    ``prediction_key`` names the output compared with the labels in evaluation (e.g. ``"predictions"``
    in physical units, ``"heat_capacity"``). With ``args.layer_lr_decay`` the optimizer is still the one
    ``args.optim`` names (built by ``Trainer.get_optimizer_cls_and_kwargs``), over layer-wise groups.
    """

    def __init__(self, *args: Any, prediction_key: str = "predictions", sample_weights: Any | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prediction_key = prediction_key
        self.sample_weights = None if sample_weights is None else torch.as_tensor(sample_weights, dtype=torch.double)

    def _get_train_sampler(self, train_dataset: Any | None = None) -> torch.utils.data.Sampler | None:
        """With ``sample_weights`` (one per training row), draw ``len(train_dataset)`` rows an epoch with replacement
        in proportion to them (``WeightedRandomSampler``, seeded by ``args.seed``: every process draws the same
        order, which ``accelerate`` then shards); otherwise ``Trainer``'s sampler."""
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if self.sample_weights is None or dataset is None:
            return super()._get_train_sampler(train_dataset)
        if len(self.sample_weights) != len(dataset):
            raise CloudConfigError(f"{len(self.sample_weights)} sample weights for {len(dataset)} training rows")
        return EpochWeightedSampler(self.sample_weights, num_samples=len(dataset), seed=int(self.args.seed))


    def _set_signature_columns_if_needed(self) -> None:
        """The forward's arguments, as ``Trainer`` finds them, plus the structure-feature inputs the model's config
        declares (a head reads them through ``**kwargs`` by their registered input names, e.g. ``cell_features``),
        so ``remove_unused_columns`` keeps those columns."""
        super()._set_signature_columns_if_needed()
        config = getattr(self.model, "config", None)
        if config is not None and getattr(config, "structure_feature_names", None):
            from cloud_hf.features import input_names

            self._signature_columns += [name for name in input_names(config.structure_feature_names)
                                        if name not in self._signature_columns]

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save as ``Trainer`` does, but the options as ``training_args.json``, not the pickle ``training_args.bin``.

        Model folders then hold no pickle at all. Checkpoint folders keep only Trainer's own resume state
        (``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``, which Trainer loads itself); resuming never reads
        ``training_args.bin``.
        """
        super()._save(output_dir, state_dict)
        folder = Path(output_dir if output_dir is not None else self.args.output_dir)
        if self.args.should_save:
            (folder / TRAINING_ARGS_NAME).unlink(missing_ok=True)
            (folder / "training_args.json").write_text(self.args.to_json_string(), encoding="utf-8")

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        decay = getattr(self.args, "layer_lr_decay", None)
        if decay is None or self.optimizer is not None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        optimizer_class, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        unsupported = {"params", "model", "optimizer_dict"} & set(optimizer_kwargs)
        if unsupported:
            raise CloudConfigError(f"optim {self.args.optim} builds its own parameter groups; it cannot be used "
                                   f"with layer_lr_decay (set layer_lr_decay to None)")
        groups = layerwise_parameter_groups(model, self.args.learning_rate, decay, self.args.weight_decay,
                                            set(self.get_decay_parameter_names(model)))
        self.optimizer = optimizer_class(groups, **optimizer_kwargs)
        return self.optimizer

    def prediction_step(self, model: torch.nn.Module, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None):
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get(self.label_names[0]) if self.label_names else None
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = model(**inputs)
        loss = outputs.get("loss")
        loss = loss.mean().detach() if loss is not None else None
        if prediction_loss_only:
            return loss, None, None
        predictions = outputs[self.prediction_key].detach()
        return loss, predictions, None if labels is None else labels.detach()


@dataclass
class ReproducibleMLMCollator(DataCollatorForLanguageModeling):
    """Masked-LM collator whose masks depend only on ``mask_seed`` and the batch's token ids.

    The global RNG is consumed in a different order by a resumed run (the data loader prefetches the next
    batch before the current step's dropout), so masks drawn from it differ after a resume; seeding each
    batch from its content makes an interrupted-and-resumed pre-training end in the same state as an
    uninterrupted one, whatever the thread count or worker processes. Batches differ from epoch to epoch
    (reshuffled), so masks do too.

    The base class's own ``seed`` stays None: with a seed, ``DataCollatorForLanguageModeling`` replaces the
    generator by ``Generator(seed)`` on the first batch of every process (its per-process RNG check), so the
    first batch after a resume would be masked unlike the same batch of the uninterrupted run.
    """

    mask_seed: int = 42

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        digest = hashlib.blake2b(repr([list(e["input_ids"]) for e in examples]).encode(), digest_size=8).digest()
        self.generator = torch.Generator().manual_seed((int(self.mask_seed) * 1_000_003
                                                        + int.from_bytes(digest, "little")) % 2**63)
        return super().torch_call(examples)


def build_trainer(model: PreTrainedModel, tokenizer: Any, training_args: CloudTrainingArguments,
                  train_rows: datasets.Dataset, eval_rows: datasets.Dataset | None, task: TaskSpec | None, *,
                  data_collator: Any | None = None, sample_weights: Any | None = None) -> CloudTrainer:
    """A :class:`CloudTrainer` wired for ``task`` (metrics, label name) with early stopping on the eval loss.

    ``task`` None (pre-training) scores nothing but the loss. ``sample_weights`` (one per training row) draw the
    training rows in proportion to them. Any recipe builds its Trainer here.
    """
    callbacks = []
    if training_args.early_stopping_patience and eval_rows is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience))
    if task is not None:
        training_args.label_names = [task.label_name]
    return CloudTrainer(
        model=model,
        args=training_args,
        data_collator=data_collator or DataCollatorWithPadding(tokenizer),
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        processing_class=tokenizer,
        compute_metrics=metrics_function(task) if task is not None else None,
        callbacks=callbacks,
        prediction_key=task.prediction_key if task is not None else "logits",
        sample_weights=sample_weights,
    )


__all__ = [
    "CloudTrainer",
    "EpochWeightedSampler",
    "ReproducibleMLMCollator",
    "build_trainer",
    "layer_depth",
    "layerwise_parameter_groups",
    "start_run",
]
