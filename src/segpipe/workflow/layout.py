"""Where the workflow's files go: the results, benchmarks and logs of runs, models, splits and folds.

A run (segpipe.workflow.experiments.Run) trains one model or one per fold, plus the fold ensemble;
each model's train, predict and evaluate outputs go to ``results/runs/<model>/``. A model that
shares another's training (Model.trained_as) has no ``train/`` of its own: its checkpoints and
history are read from the model it shares. Runs share a
split (``results/split/<splitting>/``), its folds (``results/folds/<splitting>/k<k>/fold<i>/``)
and its arrays at one image size or scale (``results/preprocess/<splitting>/<size>/``).
The patterns are spelled once, in segpipe.workflow.paths: the rule files (rules/*.smk) declare
them as their outputs; :class:`Layout` answers which of them a run or a model reads.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from segpipe.data import predictions
from segpipe.models.model_input import ModelInput
from segpipe.models.pretrained import record_path
from segpipe.workflow import paths
from segpipe.workflow.experiments import Model, Run

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Layout:
    """The paths of a config's runs. ``source`` is dataset.source; ``infer``: infer.images is
    given; ``compare``: the config declares experiments or a grid (results/compare/);
    ``pretrained_cache``: pretrained.cache, where rule pretrained puts encoder weights;
    ``search_rungs``: the rungs of a search (0 without one), whose winner is trained by rule
    search_train rung by rung and published by search_winner."""

    runs: Mapping[str, Run]
    source: str = "synthetic"
    infer: bool = False
    compare: bool = False
    pretrained_cache: str = "resources/pretrained"
    search_rungs: int = 0

    @functools.cached_property
    def models(self) -> dict[str, Model]:
        """The runs' models by name: a run, its folds <run>/fold<i>, its <run>/ensemble
        (computed once: every job's input functions ask)."""
        return {model.name: model for run in self.runs.values() for model in run.models}

    def trained_models(self) -> list[str]:
        """The models rule train trains: every single model that trains as itself."""
        return [name for name, m in self.models.items() if m.trained and m.trained_as is None]

    def trained_file(self, model: str, name: str) -> str:
        """File ``name`` of rule train's outputs of a model: its own, or those of the model
        whose training it shares."""
        return paths.train_file(name, self.models[model].training)

    def model_run(self, model: str) -> Run:
        """The run a model (a run's, a fold's, an ensemble) belongs to."""
        return self.runs[self.models[model].run]

    def split_manifest(self, run: str, split: str) -> str:
        """The manifest of ``split`` (or ``classes``) in the split setting the run uses."""
        return paths.split_manifest(split, self.runs[run].splitting)

    def fold_manifest(self, run: str, fold: int, part: str) -> str:
        """The manifest of ``part`` (train, val, classes) of fold ``fold`` of the run's k-fold
        cross-validation (rule folds)."""
        setting = self.runs[run]
        return paths.fold_manifest(part, setting.splitting, setting.folds, fold)

    def model_manifest(self, model: str, split: str) -> str:
        """The images a model trains on (train), selects its epoch on (val) or is tested on: a
        fold's own train and val parts of the pool (rule folds), else the run's split."""
        found = self.models[model]
        if found.fold is None or split == "test":
            return self.split_manifest(found.run, split)
        return self.fold_manifest(found.run, found.fold, split)

    def preprocess_size(self, run: str) -> str:
        """How the run's images are preprocessed: to the image size (squash), or x<scale>
        (keep_aspect: x0.5 is half the size, aspect ratio kept)."""
        model_input = ModelInput.from_train(self.runs[run].config["train"])
        return paths.preprocess_size(model_input.size, model_input.scale)

    def preprocessed(self, run: str, split: str) -> str:
        """The array of ``split`` at the run's image size or scale (rule preprocess)."""
        return paths.preprocessed(split, self.runs[run].splitting, self.preprocess_size(run))

    def model_arrays(self, model: str, split: str) -> dict[str, list[str]]:
        """The arrays holding the images of ``model_manifest(model, split)`` and the manifests
        they were written from: the test array, or the train and val arrays of the split, which
        a fold's train and val parts are drawn from (segpipe.data.preprocess.select_rows)."""
        run = self.models[model].run
        parts = ["test"] if split == "test" else ["train", "val"]
        return {
            "arrays": [self.preprocessed(run, part) for part in parts],
            "array_manifests": [self.split_manifest(run, part) for part in parts],
        }

    def uses_tta(self, model: str) -> bool:
        """Whether a model's run predicts with flips (predict.tta): then also without them."""
        return bool(self.model_run(model).config["predict"]["tta"])

    def evaluate_rules(self, model: str) -> list[str]:
        """The rules that evaluate a model's splits: without flips too with predict.tta."""
        return ["evaluate", "evaluate_no_tta"] if self.uses_tta(model) else ["evaluate"]

    def predict_dir(self, model: str) -> str:
        """Rule predict's folder of a model: a predictions folder per split it is scored on
        (segpipe.data.predictions.split_dir)."""
        return paths.predict_dir(model)

    def predictions(self, model: str, split: str) -> str:
        """The predictions folder of a model's split, with the configured flips."""
        return str(predictions.split_dir(self.predict_dir(model), split))

    def predict_inputs(self, model: str) -> dict[str, list[str]]:
        """The inputs of rule predict: the checkpoints, the manifest of each split the model is
        scored on (Model.splits, in order), and the arrays that hold their images with the
        manifests they were written from (:meth:`model_arrays`)."""
        splits = self.models[model].splits
        arrays: dict[str, str] = {}
        for split in splits:
            found = self.model_arrays(model, split)
            arrays.update(zip(found["arrays"], found["array_manifests"], strict=True))
        return {
            "checkpoints": self.checkpoints(model),
            "manifests": [self.model_manifest(model, split) for split in splits],
            "arrays": list(arrays),
            "array_manifests": list(arrays.values()),
        }

    def encoder_weights(self, model: str) -> tuple[str, str] | None:
        """The (train.encoder, train.encoder_weights) a model starts from; None from scratch."""
        train = self.model_run(model).config["train"]
        if train["encoder_weights"] is None:
            return None
        return train["encoder"], train["encoder_weights"]

    def weights_record(self, model: str) -> dict[str, str]:
        """Rule train's input with train.encoder_weights: the record of the weights in the
        cache, which rule pretrained writes; none without (no extra input, no extra job)."""
        weights = self.encoder_weights(model)
        if weights is None:
            return {}
        return {"weights_record": str(record_path(self.pretrained_cache, *weights))}

    def weights_cache(self, model: str) -> str | None:
        """The cache a model's train job reads its weights from, offline; None from scratch."""
        return None if self.encoder_weights(model) is None else self.pretrained_cache

    def checkpoints(self, model: str) -> list[str]:
        """The best checkpoints a model predicts with: its own, or its fold members' (ensemble)."""
        members = self.models[model].members or (model,)
        return [self.trained_file(member, "best.pt") for member in members]

    def evaluations(self) -> list[str]:
        """Every model's metrics on each split it is evaluated on, with the configured flips
        and, for a run with predict.tta, without them (evaluate_no_tta)."""
        return [
            paths.evaluated("metrics.json", rule, name, split)
            for name, model in self.models.items()
            for rule in self.evaluate_rules(name)
            for split in model.splits
        ]

    def evaluated(self, model: str, split: str, name: str, rule: str = "evaluate") -> str:
        """File ``name`` of rule evaluate (or evaluate_no_tta) for a model's split."""
        return paths.evaluated(name, rule, model, split)

    def fold_classes(self, run: str) -> list[str]:
        """Images per class in each fold's train and val parts (rule folds); none without."""
        return [
            self.fold_manifest(run, fold, "classes") for fold in range(self.runs[run].folds or 0)
        ]

    def crossval_inputs(self, run: str) -> dict[str, str | list[str]]:
        """The inputs of rule crossval, each fold's val and test scores, in fold order, and the
        fold ensemble's test scores when the run has one."""
        setting = self.runs[run]
        folds = [model.name for model in setting.models if model.trained]
        files: dict[str, str | list[str]] = {
            "val_metrics": [self.evaluated(m, "val", "metrics.json") for m in folds],
            "test_metrics": [self.evaluated(m, "test", "metrics.json") for m in folds],
            "val_per_image": [self.evaluated(m, "val", "per_image.csv") for m in folds],
        }
        if setting.primary.members:
            files["ensemble_test_metrics"] = self.evaluated(
                setting.primary.name, "test", "metrics.json"
            )
        return files

    def crossval_outputs(self, run: str) -> dict[str, str]:
        """The cross-validation summary of a run with folds (rule crossval); none without."""
        if not self.runs[run].folds:
            return {}
        return {
            "crossval_metrics": paths.crossval_file("metrics.json", run),
            "crossval_folds": paths.crossval_file("folds.csv", run),
            "crossval_per_image": paths.crossval_file("per_image.csv", run),
        }

    def report_inputs(self, run: str) -> dict[str, str | list[str]]:
        """The inputs of rule report for a run: the test outputs of the model that stands for
        it (Run.primary), its training history (each fold's, with folds), with folds the
        cross-validation summary, with predict.tta the scores without the flips, and the
        infer.images predictions when the run predicts them."""
        setting = self.runs[run]
        primary, first = setting.primary.name, setting.models[0].name
        trained = [m.name for m in setting.models if m.trained]
        return {
            "metrics": self.evaluated(primary, "test", "metrics.json"),
            "val_metrics": self.evaluated(first, "val", "metrics.json"),
            "per_class": self.evaluated(primary, "test", "per_class.csv"),
            "confusion": self.evaluated(primary, "test", "confusion.csv"),
            "per_image": self.evaluated(primary, "test", "per_image.csv"),
            "history": [self.trained_file(m, "history.csv") for m in trained],
            "manifest": self.split_manifest(run, "test"),
            "predictions": self.predict_dir(primary),
            "quarantine": paths.REMAP_QUARANTINE,
            "index": paths.REMAP_INDEX,
            "classes": self.split_manifest(run, "classes"),
            "fold_classes": self.fold_classes(run),
            **self.crossval_outputs(run),
            **self._no_tta_inputs(run),
            **({"infer": self.infer_dir(run)} if self.run_infers() else {}),
        }

    def _no_tta_inputs(self, run: str) -> dict[str, str | list[str]]:
        """For a run with predict.tta: the test scores of the model that stands for it, and
        each trained model's val scores, with and without the flips; none without."""
        setting = self.runs[run]
        if not setting.config["predict"]["tta"]:
            return {}
        primary = setting.primary.name
        trained = [m.name for m in setting.models if m.trained]
        return {
            "no_tta_metrics": self.evaluated(primary, "test", "metrics.json", "evaluate_no_tta"),
            "no_tta_per_class": self.evaluated(primary, "test", "per_class.csv", "evaluate_no_tta"),
            "tta_val_metrics": [self.evaluated(m, "val", "metrics.json") for m in trained],
            "no_tta_val_metrics": [
                self.evaluated(m, "val", "metrics.json", "evaluate_no_tta") for m in trained
            ],
        }

    def compare_run(self, run: str) -> dict:
        """What rule compare reads of a run (see segpipe.reporting.comparison.RunResult), paths
        relative to the workflow; ``report_html`` relative to the comparison report. With folds:
        the test outputs of the fold ensemble (else fold 0), fold 0's training, the
        cross-validation summary."""
        setting = self.runs[run]
        primary, first = setting.primary.name, setting.models[0].name
        return {
            "name": run,
            "overrides": setting.overrides,
            "trained_as": setting.shares,
            "report_html": paths.relative(paths.report_file("report.html", run), paths.COMPARE_DIR),
            "val_metrics": self.evaluated(first, "val", "metrics.json"),
            "test_metrics": self.evaluated(primary, "test", "metrics.json"),
            "test_per_class": self.evaluated(primary, "test", "per_class.csv"),
            "test_per_image": self.evaluated(primary, "test", "per_image.csv"),
            "history": self.trained_file(first, "history.csv"),
            "model_json": self.trained_file(first, "model.json"),
            "test_manifest": self.split_manifest(run, "test"),
            "test_predictions": self.predictions(primary, "test"),
            **self.crossval_outputs(run),
        }

    def compare_inputs(self) -> list[str]:
        """Every file rule compare reads, and each run's report (linked from the comparison)."""
        files = []
        for run in self.runs:
            entry = self.compare_run(run)
            skip = ("name", "overrides", "trained_as", "report_html", "test_predictions")
            files += [v for k, v in entry.items() if k not in skip]
            files.append(self.predict_dir(self.runs[run].primary.name))
            files.append(paths.report_file("report.html", run))
        return sorted(set(files)) + ([self.infer_dir()] if self.infer else [])

    def selection_runs(self) -> dict[str, dict[str, str | None]]:
        """Per run, in declared order, the validation scores the comparison selects a run by
        (segpipe.evaluation.selection.validation_score): its val metrics, a cross-validated
        run's summary."""
        return {
            run: {
                "val_metrics": self.compare_run(run)["val_metrics"],
                "crossval_metrics": self.compare_run(run).get("crossval_metrics"),
            }
            for run in self.runs
        }

    def selection_inputs(self) -> list[str]:
        """The files of selection_runs."""
        files = [path for entry in self.selection_runs().values() for path in entry.values()]
        return sorted({path for path in files if path})

    def infer_dir(self, run: str | None = None) -> str:
        """Where the images of infer.images are predicted: in the run's folder (the first
        run's when none is named), or with experiments by the run the comparison selects, in
        results/compare/infer."""
        if self.compare:
            return paths.compare_file("infer")
        return paths.infer_dir(run or next(iter(self.runs)))

    def run_infers(self) -> bool:
        """Whether a run's own infer job predicts infer.images (given, and no comparison)."""
        return self.infer and not self.compare

    def run_benchmarks(self, run: str) -> dict[str, str]:
        """Job name -> Snakemake benchmark file of every job a run's report depends on."""
        return {**self._data_benchmarks(run), **self._model_benchmarks(run)}

    def _data_benchmarks(self, run: str) -> dict[str, str]:
        setting, size = self.runs[run], self.preprocess_size(run)
        jobs = {}
        if self.source == "synthetic":
            jobs["synthesize"] = paths.benchmark("synthesize", "synthesize")
        if self.source != "folder":
            jobs["download"] = paths.benchmark("download", "download")
        jobs["remap"] = paths.benchmark("remap", "remap")
        jobs["split"] = paths.benchmark("split", setting.splitting)
        for fold in range(setting.folds or 0):
            jobs[f"folds (fold {fold})"] = paths.benchmark(
                "folds", f"{setting.splitting}/k{setting.folds}/fold{fold}"
            )
        for split in SPLITS:
            jobs[f"preprocess ({split})"] = paths.benchmark(
                "preprocess", f"{setting.splitting}/{size}/{split}"
            )
        return jobs

    def _train_benchmarks(self, model: Model, label: str) -> dict[str, str]:
        """The benchmarks of the jobs that trained a model: rule train's (the model's own, or
        the one's whose training it shares), or a search winner's rungs and publication."""
        if self.search_rungs:
            rungs = {
                f"{label}search_train (rung {rung})": paths.benchmark(
                    "search_train", f"{model.name}/rung{rung}"
                )
                for rung in range(self.search_rungs)
            }
            winner = paths.benchmark("search_winner", model.name)
            return {**rungs, f"{label}search_winner": winner}
        if model.trained_as:
            shared = paths.benchmark("train", model.trained_as)
            return {f"{label}train (shared: {model.trained_as})": shared}
        return {f"{label}train": paths.benchmark("train", model.name)}

    def _model_benchmarks(self, run: str) -> dict[str, str]:
        setting = self.runs[run]
        jobs = {}
        for model in setting.models:
            label = model.name.removeprefix(setting.name).strip("/")
            label = f"{label}: " if label else ""
            if model.trained:
                jobs.update(self._train_benchmarks(model, label))
            jobs[f"{label}predict"] = paths.benchmark("predict", model.name)
            for rule in self.evaluate_rules(model.name):
                for split in model.splits:
                    jobs[f"{label}{rule} ({split})"] = paths.benchmark(
                        rule, f"{model.name}/{split}"
                    )
        if setting.folds:
            jobs["crossval"] = paths.benchmark("crossval", setting.name)
        if self.run_infers():
            jobs["infer"] = paths.benchmark("infer", setting.name)
        return jobs
