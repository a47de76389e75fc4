"""What the training loop reports, as hooks: the console and TensorBoard.

The `Trainer` only loops; at fixed points it calls every hook it was
given, in order:

    on_train_begin(trainer)                  after restore and data checks
    on_epoch_begin(trainer, epoch, first_step)   first_step > 0: resumed
    on_step(trainer, epoch, step, values)    after each optimizer step
    on_epoch_trained(trainer, epoch)         the epoch's steps are done
    on_epoch_end(trainer, epoch, metrics, improved, seconds)
                                             validated and checkpointed
    on_train_end(trainer)                    also when training fails

`epoch` counts from 0, `step` is the number of steps done in the epoch
(1 after its first step), `values` the step's loss terms (`LOSS_TERMS`)
and `grad_norm` as floats; `metrics` the seen-label validation metrics
(with `n_images`). `trainer.global_step()` is the optimizer's step.

`ConsoleProgress` prints the epochs, a progress bar (a terminal) or
periodic lines (a log file), and the validation line of each epoch;
`TensorBoardSummaries` writes the summaries of `training/summaries.py`.
"""

import sys

import keras
import tensorflow as tf

from epsilon_tf.data.pipeline import input_errors
from epsilon_tf.models import fusion_weight
from epsilon_tf.training import summaries
from epsilon_tf.training.progress import ProgressLines

SUMMARY_EVERY_STEPS = 10


class TrainingHook:
    """Does nothing at every point of the loop; subclasses pick theirs."""

    def on_train_begin(self, trainer):
        pass

    def on_epoch_begin(self, trainer, epoch, first_step):
        pass

    def on_step(self, trainer, epoch, step, values):
        pass

    def on_epoch_trained(self, trainer, epoch):
        pass

    def on_epoch_end(self, trainer, epoch, metrics, improved, seconds):
        pass

    def on_train_end(self, trainer):
        pass


class ConsoleProgress(TrainingHook):
    """Epoch lines, the step progress and the validation results.

    A terminal gets Keras' `Progbar`; other output (a log file, CI, a
    cluster job) a plain line every `every_seconds` and one at the end
    of each epoch (`ProgressLines`).

    Args:
        every_seconds: float. Time between two plain lines.
        stream: file the bar or lines go to (default `sys.stdout`; a
            terminal gets the bar).
    """

    def __init__(self, every_seconds=30.0, stream=None):
        self.every_seconds = every_seconds
        self.stream = stream
        self._bar = self._lines = None
        self._first_step = 0
        self._loss_sum = 0.0
        self._step = 0

    def _mean_loss(self):
        return self._loss_sum / (self._step - self._first_step)

    def on_epoch_begin(self, trainer, epoch, first_step):
        stream = self.stream or sys.stdout
        print(f"Epoch {epoch + 1}/{trainer.train_config.epochs}",
              file=stream, flush=True)
        self._first_step = self._step = first_step
        self._loss_sum = 0.0
        self._bar = self._lines = None
        if stream.isatty():
            self._bar = keras.utils.Progbar(
                trainer.steps_per_epoch,
                stateful_metrics=["loss", "lr"],
                interval=0.05,
            )
        else:
            self._lines = ProgressLines(
                trainer.steps_per_epoch, trainer.global_batch,
                every_seconds=self.every_seconds, first_step=first_step,
                stream=stream,
            )

    def on_step(self, trainer, epoch, step, values):
        self._step = step
        self._loss_sum += values["total"]
        lr = trainer.current_learning_rate()
        if self._bar is not None:
            self._bar.update(step, [("loss", self._mean_loss()), ("lr", lr)])
        if self._lines is not None:
            self._lines.update(step, self._mean_loss(), lr)

    def on_epoch_trained(self, trainer, epoch):
        if self._lines is not None and self._step > self._first_step:
            self._lines.finish(
                self._mean_loss(), trainer.current_learning_rate()
            )

    def on_epoch_end(self, trainer, epoch, metrics, improved, seconds):
        shown = ", ".join(
            f"{k}={v:.4f}" for k, v in metrics.items() if k != "n_images"
        )
        print(
            f"  validation (seen labels, {metrics['n_images']} images): "
            + shown + f"  [{seconds:.1f}s]" + ("  * best" if improved else ""),
            file=self.stream or sys.stdout, flush=True,
        )


class TensorBoardSummaries(TrainingHook):
    """The run's TensorBoard summaries (`training/summaries.py`).

    `train/`: the loss terms, gradient norm, learning rate and fusion
    weight every `SUMMARY_EVERY_STEPS` steps (and the first step of each
    epoch), weight histograms every epoch; `validation/`: the validation
    metrics and the assignment images of `summary_images` fixed images
    every epoch. `write_test_summaries` adds the final ones.

    Args:
        run_dir: `RunDir` of the run.
        summary_images: int. Validation images whose assignment maps are
            drawn each epoch (0: none).
        pr_curve_labels: int. Unseen labels with a PR curve at the end.
    """

    def __init__(self, run_dir, summary_images=0, pr_curve_labels=0):
        self.run_dir = run_dir
        self.summary_images = summary_images
        self.pr_curve_labels = pr_curve_labels
        self.writers = {
            name: tf.summary.create_file_writer(run_dir.summaries(name))
            for name in ("train", "validation")
        }
        self._examples = None
        self._pr_curves = None

    def _first_validation_images(self, trainer):
        """The first few validation images (fixed), for the image summaries."""
        n = self.summary_images
        if not n or "assignments" not in trainer.model.output:
            return None
        with input_errors():
            for batch in trainer.task.build_validation_inputs(n).take(1):
                ids = [v.decode("utf-8", "replace")
                       for v in batch["image_id"].numpy()]
                return batch["features"].numpy(), ids
        return None

    def flush(self):
        for writer in self.writers.values():
            writer.flush()

    def on_train_begin(self, trainer):
        self._examples = self._first_validation_images(trainer)

    def on_step(self, trainer, epoch, step, values):
        global_step = trainer.global_step()
        if global_step % SUMMARY_EVERY_STEPS and step != 1:
            return
        summaries.write_scalars(
            self.writers["train"],
            {
                "loss/total": values["total"],
                "loss/ranking": values["ranking"],
                "loss/diversity": values["diversity"],
                "loss/attention": values["attention"],
                "train/grad_norm": values["grad_norm"],
                "train/learning_rate": trainer.current_learning_rate(),
                "train/fusion_weight": fusion_weight(trainer.model),
            },
            global_step,
        )

    def on_epoch_end(self, trainer, epoch, metrics, improved, seconds):
        global_step = trainer.global_step()
        summaries.write_scalars(
            self.writers["validation"],
            {f"validation/{k}": v for k, v in metrics.items()
             if k != "n_images"},
            global_step,
        )
        summaries.write_weight_histograms(
            self.writers["train"], trainer.model, global_step
        )
        if self._examples is not None:
            summaries.write_assignment_images(
                self.writers["validation"], trainer.model, *self._examples,
                global_step,
            )
        self.flush()

    def on_train_end(self, trainer):
        self.flush()

    def pr_curve_hook(self, label_space):
        """An `on_scores(scores, labels)` callback for `evaluate_model`:
        keeps the PR curves of the most frequent unseen labels (written
        by `write_test_summaries`)."""

        def keep(scores, labels):
            columns = summaries.select_pr_labels(
                labels, label_space.unseen_mask, self.pr_curve_labels
            )
            self._pr_curves = (
                summaries.pr_curve_data(scores, labels, columns),
                [label_space.names[int(k)] for k in columns],
            )

        return keep

    def write_test_summaries(self, result, step, hparams, select_metric,
                             table=None):
        """Final metrics, results table, PR curves and HParams.

        `test/` gets the test (and baseline) scalars, the markdown table
        `test/results` and the PR curves; `validation/` the best
        validation score; `model_dir` itself the HParams of the run (trial
        ID: the folder's name), with the test metrics as its first columns.

        Args:
            result: the metrics dict of `train_and_evaluate` (`zsl`,
                `gzsl`, `training`, optionally `baselines`, `chance`).
            step: int. The step the summaries are written at.
            hparams: dict (`summaries.flat_hparams`).
            select_metric: str. The validation metric that chose the epoch.
            table: str or None. The markdown results table.
        """
        values = summaries.final_metric_scalars(result, select_metric)
        best = summaries.best_validation_scalar(result, select_metric)
        writer = tf.summary.create_file_writer(self.run_dir.summaries("test"))
        summaries.write_scalars(writer, values, step)
        if table:
            summaries.write_text(
                writer, summaries.TEXT_TABLE_TAG, table, step,
                description="Final test metrics (%) of the selected epoch, "
                "beside the baselines.",
            )
        if self._pr_curves is not None:
            summaries.write_pr_curves(writer, *self._pr_curves, step)
        writer.flush()
        writer.close()
        if best:
            summaries.write_scalars(self.writers["validation"], best, step)
            self.writers["validation"].flush()
        root = tf.summary.create_file_writer(self.run_dir.summaries())
        summaries.write_hparams(
            root, hparams,
            summaries.hparams_metric_names(list(values) + list(best)),
            trial_id=self.run_dir.trial_id,
        )
        root.flush()
        root.close()
