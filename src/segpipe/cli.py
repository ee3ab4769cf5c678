"""The ``segpipe`` command. ``segpipe verify`` checks a dataset before training; ``segpipe
predict`` applies a trained model to new images; ``segpipe export`` writes a model as ONNX; ``segpipe fetch-weights`` downloads an encoder's
pretrained weights into a cache folder, on a machine with network, for training offline.

Each command's --help ends with examples of it (:data:`EXAMPLES`).

Exit status (the same for every command):

  0  done: every file usable (verify), every input predicted (predict), written (export,
     fetch-weights);
  1  problems found: verify found unusable files; predict skipped an input (an empty file, a
     truncated image, no image, a hidden file in a folder given; the others are still
     predicted, summary.csv lists every one with its reason);
  2  a usage or config error, before any work: a missing or unreadable checkpoint or ONNX
     file, a missing input, a folder without files, two inputs predicted into one file,
     weights that cannot be fetched; an output (--out, --json, --cache) that is a file where
     a folder goes or the reverse, that is, holds or lies inside what the command reads (an
     input, the checkpoint, the config, the dataset) or is the working directory, or that
     would replace a file or folder segpipe did not write (see --overwrite);
  3  an output could not be written: no space left, a disk quota, a read-only file system,
     no permission. One line names the file and the cause; nothing half-written is left and
     an earlier output stays as it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segpipe.data.dataset_layouts import LAYOUTS, SPLIT_LISTS
from segpipe.data.remap import UNMAPPED_POLICIES
from segpipe.io import WRITE_ERRORS, WriteError, check_writable, write_text
from segpipe.logs import UserError
from segpipe.outputs import Read, check_file
from segpipe.planning.rules import DEFAULT_SAMPLE
from segpipe.workflow import paths

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_WRITE = 0, 1, 2, 3


def _table(items: list[str] | None) -> dict[int, int] | None:
    """``["0=0,255=1", "7=2"]`` -> ``{0: 0, 255: 1, 7: 2}``."""
    if not items:
        return None
    table: dict[int, int] = {}
    for item in items:
        for pair in filter(None, item.split(",")):
            raw, _, cls = pair.partition("=")
            try:
                value, class_id = int(raw), int(cls)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"--table: '{pair}' is not RAW=CLASS (integers)"
                ) from None
            if table.get(value, class_id) != class_id:
                raise argparse.ArgumentTypeError(
                    f"--table: raw value {value} maps to class {table[value]} and {class_id}"
                )
            table[value] = class_id
    return table


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return count


def _colors(items: list[str] | None) -> list[dict] | None:
    """``["128,0,0=1"]`` -> ``[{"color": [128, 0, 0], "class": 1}]``."""
    if not items:
        return None
    out = []
    for item in items:
        rgb, _, cls = item.partition("=")
        try:
            color = [int(v) for v in rgb.split(",")]
            out.append({"color": color, "class": int(cls)})
        except ValueError:
            raise argparse.ArgumentTypeError(f"--color: '{item}' is not R,G,B=CLASS") from None
        if len(color) != 3:
            raise argparse.ArgumentTypeError(f"--color: '{item}' is not R,G,B=CLASS")
    return out


def _split_lists(items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    lists = {}
    for item in items:
        name, _, path = item.partition("=")
        if name not in SPLIT_LISTS or not path:
            raise argparse.ArgumentTypeError(
                f"--split-list: '{item}' is not trainval=FILE or test=FILE"
            )
        lists[name] = path
    return lists


def _input_file(path: Path, what: str) -> Path:
    """``path`` when it is a file; else ValueError naming it: missing, or a folder."""
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give the {what.removesuffix(' file')} file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    return path


def _find_schema(configfile: Path) -> Path:
    for folder in (
        configfile.resolve().parent,
        *configfile.resolve().parents,
        Path.cwd() / "config",
    ):
        candidate = folder / "schema.yaml"
        if candidate.is_file():
            return candidate
        candidate = folder / "config" / "schema.yaml"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no schema.yaml found near {configfile}; pass --schema")


def _from_config(paths: list[Path], schema: Path | None) -> dict[str, Any]:
    """verify_dataset arguments taken from pipeline configs layered as Snakemake layers them
    (config/config.yaml of the working directory, then each file; validated, defaults filled
    in): the dataset and remap options rule remap takes
    (:func:`segpipe.workflow.config.dataset_options`) and the dataset root. A config that reads
    another dataset than config.yaml and leaves it options that describe a dataset is refused,
    as the workflow refuses it."""
    from segpipe.workflow.config import (
        ConfigError,
        base_config,
        borrowed_options,
        dataset_options,
        layered_config,
        load_schema,
        validate_config,
    )

    for path in paths:
        if path.is_dir():
            _input_file(path, "config file")  # one line naming the folder
    raw, override = layered_config(paths)
    if problem := borrowed_options(base_config(), override):
        raise ConfigError(problem)
    cfg = validate_config(raw, load_schema(schema or _find_schema(paths[0])))
    options = dataset_options(cfg)
    del options["max_quarantine_fraction"]  # the remap step's limit; verify lists every problem
    return {"root": cfg["dataset"].get("root"), **options}


def _add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The dataset and remap options ``segpipe verify`` and ``segpipe plan`` share."""
    parser.add_argument("--layout", choices=LAYOUTS, help="dataset layout (default: folder)")
    parser.add_argument("--images-dir", help="image directory relative to ROOT (layout default)")
    parser.add_argument("--masks-dir", help="mask directory relative to ROOT (layout default)")
    parser.add_argument("--mask-suffix", help="masks are named <image stem><suffix>, e.g. _mask")
    parser.add_argument(
        "--split-list",
        action="append",
        metavar="NAME=FILE",
        help="trainval=FILE or test=FILE, relative to ROOT (repeatable)",
    )
    parser.add_argument(
        "--table",
        action="append",
        metavar="RAW=CLASS,...",
        help="remap table, e.g. 0=0,255=1 (repeatable)",
    )
    parser.add_argument(
        "--color", action="append", metavar="R,G,B=CLASS", help="colour table entry (repeatable)"
    )
    parser.add_argument("--ignore-value", type=int, help="raw value to ignore (e.g. 255 for VOC)")
    parser.add_argument("--ignore-index", type=int, help="class id of ignored pixels (default 255)")
    parser.add_argument("--classes", help="class names in id order, comma-separated")
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        help="larger images and masks are problems, not decoded (default 89478485)",
    )
    parser.add_argument("--threads", type=_at_least(1), default=1, help="processes (default 1)")


def _dataset_given(args: argparse.Namespace) -> dict[str, Any]:
    """The dataset and remap options given on the command line (None: not given)."""
    return {
        "root": args.root,
        "layout": args.layout,
        "images_dir": args.images_dir,
        "masks_dir": args.masks_dir,
        "mask_suffix": args.mask_suffix,
        "split_lists": _split_lists(args.split_list),
        "table": _table(args.table),
        "colors": _colors(args.color),
        "ignore_value": args.ignore_value,
        "ignore_index": args.ignore_index,
        "class_names": args.classes.split(",") if args.classes else None,
        "max_image_pixels": args.max_image_pixels,
    }


def _with_given(options: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``options`` (from a config) with the command line's given options over them; a table
    given replaces the config's colours, and colours its table."""
    options = {**options, **{k: v for k, v in given.items() if v is not None}}
    if given["colors"]:
        options["table"] = None
    elif given["table"]:
        options["colors"] = None
    if not options.get("root"):
        raise FileNotFoundError("no dataset directory: give ROOT (or dataset.root in --configfile)")
    if Path(options["root"]).is_file():
        raise ValueError(f"{options['root']}: is a file, not a dataset folder")
    return options


# What each command's --help shows as examples: commands as a user types them, with the paths the
# pipeline really writes (results/runs/<run_name>/train/best.pt, its rules/train.smk output) and
# configs the repository has; tests/test_cli.py parses every one.
RUN = paths.train_file("", "oxford-pets-unet-resnet34").rstrip("/")
EXAMPLES: dict[str, list[str]] = {
    "verify": [
        "segpipe verify --configfile config/examples/membrane_mini_unet.yaml",
        "segpipe verify --layout folder data/cells --masks-dir labels --table 0=0,255=1",
        "segpipe verify --layout voc VOCdevkit/VOC2012 --ignore-value 255 --json voc.json",
    ],
    "plan": [
        "segpipe plan --layout folder data/cells --masks-dir labels --table 0=0,255=1",
        "segpipe plan --configfile my.yaml --device cuda --hours 4 --search 8 -o config/p.yaml",
    ],
    "predict": [
        f"segpipe predict {RUN}/best.pt new_images/ --out predictions/",
        f"segpipe predict {RUN}/best.pt scan.tif --mode sliding --tta hflip vflip --out scan/",
        f"segpipe predict --onnx {RUN}/model.onnx new_images/ --out predictions/",
    ],
    "export": [
        f"segpipe export {RUN}/best.pt  # writes {RUN}/model.onnx",
    ],
    "fetch-weights": [
        "segpipe fetch-weights --encoder resnet34 --weights imagenet --cache resources/pretrained",
    ],
}


def _examples(*commands: str) -> str:
    lines = [f"  {example}" for command in commands for example in EXAMPLES[command]]
    return "Examples:\n" + "\n".join(lines)


def _subparser(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    """A command's parser, its --help ending with its examples."""
    return sub.add_parser(
        name,
        epilog=_examples(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segpipe",
        description=__doc__.split("\n\n")[0],
        epilog=_examples(*EXAMPLES) + "\n\nExit status" + __doc__.split("Exit status")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    verify = _subparser(
        sub,
        "verify",
        help="check a dataset before training and print a summary",
        description=(
            "Decode every image and mask, pair them, check sizes and mask values against the "
            "remap table, and print counts, sizes, real formats, class pixel shares, warnings and "
            "problems. Nothing is written. Options override the --configfile's values."
        ),
    )
    verify.add_argument("root", nargs="?", help="dataset directory (default: dataset.root)")
    verify.add_argument(
        "--configfile",
        type=Path,
        action="append",
        help="take the dataset and remap options from a pipeline config, layered over "
        "config/config.yaml as snakemake --configfile layers it (repeatable, in order)",
    )
    verify.add_argument(
        "--schema", type=Path, help="config schema (default: found beside the configfile)"
    )
    _add_dataset_arguments(verify)
    verify.add_argument(
        "--unmapped",
        choices=UNMAPPED_POLICIES,
        help="values outside the table (default error: reported as problems)",
    )
    verify.add_argument(
        "--json",
        type=Path,
        help="also write the summary as JSON here (not inside the dataset; an existing file "
        "is replaced only when it is such a summary)",
    )
    verify.add_argument(
        "--max-lines", type=_at_least(0), default=50, help="warnings/problems listed (default 50)"
    )
    _add_plan(sub)
    _add_predict(sub)
    _add_export(sub)
    _add_fetch_weights(sub)
    return parser


def _add_plan(sub) -> None:
    plan = _subparser(
        sub,
        "plan",
        help="fingerprint a dataset and write a config planned for it",
        description=(
            "Read the dataset once with the remap step's checks (a seeded sample of --sample "
            "pairs when it has more), measure the batch that fits the memory budget on the "
            "target device, and write a config that runs as it is (snakemake --configfile "
            "OUT), every planned option commented with the figure it came from, and the "
            "fingerprint (JSON). The rules are in docs/planning.md."
        ),
    )
    plan.add_argument("root", nargs="?", help="dataset directory (default: dataset.root)")
    plan.add_argument(
        "--configfile",
        type=Path,
        help="a partial config: dataset, classes, remap and ignore_index are taken from it",
    )
    plan.add_argument("--schema", type=Path, help="config schema (default: config/schema.yaml)")
    _add_dataset_arguments(plan)
    plan.add_argument("--name", help="the dataset's name (default: its folder's)")
    plan.add_argument(
        "-o", "--out", type=Path, help="config to write (default: config/<name>.yaml or ./)"
    )
    plan.add_argument(
        "--fingerprint", type=Path, help="fingerprint to write (default: beside OUT, .json)"
    )
    plan.add_argument("--overwrite", action="store_true", help="replace OUT and the fingerprint")
    plan.add_argument(
        "--sample",
        type=_at_least(0),
        default=DEFAULT_SAMPLE,
        help=f"read a seeded sample of this many pairs at most (default {DEFAULT_SAMPLE}; 0: all)",
    )
    plan.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    plan.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="target device"
    )
    plan.add_argument(
        "--memory-gb",
        type=float,
        help="memory budget of a training process (default: 85%% of the GPU; on the CPU a "
        "quarter of this machine's memory, at most 16)",
    )
    plan.add_argument(
        "--max-size", type=int, help="largest training input side (default 512 CUDA, 256 CPU)"
    )
    plan.add_argument("--max-batch", type=int, default=32, help="largest batch (default 32)")
    plan.add_argument("--hours", type=float, help="wall-clock budget of the training")
    plan.add_argument(
        "--any-orientation",
        action="store_true",
        help="the images have no canonical orientation (microscopy, aerial): vertical flips "
        "and rotations too",
    )
    plan.add_argument("--search", type=int, metavar="N", help="add a search of N candidates")


def _add_predict(sub) -> None:
    from segpipe.inference.choices import FLIPS, MODES

    predict = _subparser(
        sub,
        "predict",
        help="predict new images with a trained model",
        description=(
            "Predict every image given (and every file in the folders given) with a checkpoint: "
            "a class-id PNG mask and a colour overlay per image at its original size, and "
            "summary.csv listing every input, skipped ones with the reason. Classes, model and "
            "training size come from the checkpoint; no config file is read. With --onnx, they "
            "come from an ONNX file of segpipe export, run by onnxruntime on the CPU, and every "
            "positional argument is an input."
        ),
    )
    predict.set_defaults(usage_error=predict.error)
    predict.add_argument(
        "checkpoint",
        nargs="?",
        type=Path,
        help=f"a run's best.pt ({paths.run_dir('...')}/); not with --onnx",
    )
    predict.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER")
    predict.add_argument(
        "--onnx",
        type=Path,
        metavar="MODEL_ONNX",
        help="predict with this ONNX file of segpipe export (onnxruntime, CPU) instead of a checkpoint",
    )
    predict.add_argument(
        "--allow-stale-onnx",
        action="store_true",
        help="predict with an ONNX file even when the checkpoint beside it (or at the path "
        "recorded at export) has changed since the export; by default refused",
    )
    predict.add_argument(
        "-o",
        "--out",
        type=Path,
        required=True,
        help="output folder, written whole once complete; refused when it holds files, is "
        "or holds the checkpoint or an input, or lies inside an input folder",
    )
    predict.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output folder of an earlier segpipe predict (it lists its files in "
        ".segpipe-outputs.json); a folder segpipe did not write, or that holds other files, "
        "is never replaced",
    )
    predict.add_argument(
        "--mode",
        choices=MODES,
        help="resize: the whole image as trained (squashed to the training size, or at the "
        "training scale for a keep_aspect model); sliding: windows of the training size at the "
        "image's own scale, or the training scale (default: sliding for keep_aspect models, "
        "else resize)",
    )
    predict.add_argument(
        "--tta", nargs="+", choices=sorted(FLIPS), default=[], help="flips to average over"
    )
    predict.add_argument(
        "--overlap", type=float, default=0.5, help="sliding windows' overlap (default 0.5)"
    )
    predict.add_argument(
        "--batch-size", type=_at_least(1), default=8, help="images or tiles per batch"
    )
    predict.add_argument(
        "--probabilities", action="store_true", help="also write probabilities/<name>.npz (uint8)"
    )
    predict.add_argument(
        "--no-overlays",
        dest="with_overlays",
        action="store_false",
        help="write no overlays/<name>.jpg, only the masks (faster: a JPEG per image saved)",
    )
    predict.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA if visible), cuda or cpu; --onnx runs on the CPU",
    )


def _add_export(sub) -> None:
    from segpipe.inference.choices import DEFAULT_OPSET

    export = _subparser(
        sub,
        "export",
        help="write a trained model as ONNX for onnxruntime",
        description=(
            "Export a checkpoint's model to ONNX: input 'images' (B, 3, H, W) ImageNet-normalised "
            "float32, output 'logits' (B, C, H, W), batch, height and width free; classes, "
            "training size, architecture, encoder and ignore_index in its metadata. Prints how "
            "far onnxruntime's logits are from torch's on a random batch."
        ),
    )
    export.add_argument("checkpoint", type=Path, help=f"a run's best.pt ({paths.run_dir('...')}/)")
    export.add_argument(
        "-o",
        "--out",
        type=Path,
        help="ONNX file to write (default: model.onnx beside CHECKPOINT); an existing file is "
        "replaced only when segpipe export wrote it",
    )
    export.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )


def _add_fetch_weights(sub) -> None:
    fetch = _subparser(
        sub,
        "fetch-weights",
        help="download an encoder's pretrained weights into a cache folder (needs network)",
        description=(
            "Download the pretrained weights of an smp encoder with smp's own code into CACHE "
            "(Hugging Face hub cache layout, in CACHE/hub) and write their record, "
            "CACHE/records/ENCODER/WEIGHTS.json. Copy CACHE to a machine without network at the "
            "path pretrained.cache names there: training reads it offline. Does nothing when "
            "the record is there and its files check."
        ),
    )
    fetch.add_argument("--encoder", required=True, help="train.encoder, e.g. resnet34")
    fetch.add_argument("--weights", required=True, help="train.encoder_weights, e.g. imagenet")
    fetch.add_argument(
        "--cache",
        type=Path,
        default=Path("resources/pretrained"),
        help="the cache folder, pretrained.cache (default resources/pretrained)",
    )


def fetch_weights_main(args: argparse.Namespace) -> int:
    from segpipe.models.pretrained import fetch_weights

    if args.cache.exists() and not args.cache.is_dir():
        raise ValueError(f"--cache {args.cache} is a file; give a folder")
    check_writable(args.cache / "records")  # a read-only cache: before the download
    record = fetch_weights(args.encoder, args.weights, args.cache)
    print(f"'{args.weights}' weights of encoder '{args.encoder}' in {args.cache}: {record}")
    return EXIT_OK


def _predict_model(args: argparse.Namespace):
    """The model ``segpipe predict`` was given and its inputs: the ONNX file's (--onnx, every
    positional an input) or the checkpoint's (the first positional)."""
    from segpipe.inference.folder import load_model, load_onnx_model
    from segpipe.models.device import DeviceError

    if args.onnx is not None:
        _input_file(args.onnx, "ONNX model")
        inputs = [args.checkpoint, *args.inputs] if args.checkpoint else args.inputs
        return load_onnx_model(args.onnx, allow_stale=args.allow_stale_onnx), inputs
    if args.checkpoint is None:
        args.usage_error("the following arguments are required: IMAGE_OR_FOLDER")
    _input_file(args.checkpoint, "checkpoint")
    try:
        return load_model([args.checkpoint], device=args.device), args.inputs
    except DeviceError:
        raise DeviceError(f"--device {args.device}: no CUDA device is visible") from None


def _beside_onnx(onnx: Path) -> list[Path]:
    """The checkpoint that predict --onnx compares the ONNX file with, where there is one."""
    return [p for p in onnx.parent.glob("*.pt") if p.is_file()]


def predict_main(args: argparse.Namespace) -> int:
    from segpipe.inference.folder import predict_files

    logging.getLogger("segpipe").setLevel(logging.INFO)
    if args.batch_size < 1 or not 0 <= args.overlap < 1:
        raise ValueError("--batch-size must be at least 1 and --overlap in [0, 1)")
    model, inputs = _predict_model(args)
    if args.onnx is not None and args.checkpoint is not None:
        model = dataclasses.replace(model, files=(*model.files, *_beside_onnx(args.onnx)))
    summary = predict_files(
        model,
        inputs,
        args.out,
        mode=args.mode or model.input.default_mode,
        tta=args.tta,
        overlap=args.overlap,
        batch_size=args.batch_size,
        probabilities=args.probabilities,
        with_overlays=args.with_overlays,
        overwrite=args.overwrite,
    )
    skipped = summary[summary["status"] == "skipped"]
    print(f"{len(summary) - len(skipped)} of {len(summary)} images predicted into {args.out}")
    for row in skipped.itertuples():
        print(f"skipped {row.file}: {row.reason}")
    return EXIT_PROBLEMS if len(skipped) else EXIT_OK


def export_main(args: argparse.Namespace) -> int:
    """Export the checkpoint, then print where to and how far onnxruntime is from torch."""
    from segpipe.inference.onnx import (
        export_onnx,
        is_export,
        parity,
        random_batch,
        read_checkpoint,
    )
    from segpipe.models.model_input import ModelInput

    _input_file(args.checkpoint, "checkpoint")
    given = args.out or args.checkpoint.with_name("model.onnx")
    out = check_file(
        given,
        "--out",
        own=is_export,
        what="an ONNX file of segpipe export",
        reads=[Read(args.checkpoint, "the checkpoint")],
    )
    size = ModelInput.from_checkpoint(read_checkpoint(args.checkpoint)).size
    export_onnx(args.checkpoint, out, opset=args.opset)
    check = parity(args.checkpoint, out, random_batch((2, 3, size, size)))
    print(
        f"wrote {given}; onnxruntime vs torch on 2 random {size} x {size} images: max |logit "
        f"difference| {check['max_abs_logit_diff']:.2g}, argmax agreement "
        f"{check['argmax_agreement']:.2%}"
    )
    return EXIT_OK


def _json_output(args: argparse.Namespace, options: dict[str, Any]) -> Path:
    """Where verify --json writes: clear of the dataset and the config, and new or a summary
    that verify wrote (:func:`segpipe.outputs.check_file`)."""
    from segpipe.data.summary import is_summary_file

    reads = [Read(Path(options["root"]), "the dataset")]
    reads += [Read(path, "the config file") for path in (args.configfile, args.schema) if path]
    what = "a summary of segpipe verify --json"
    return check_file(args.json, "--json", own=is_summary_file, what=what, reads=reads)


def verify_main(args: argparse.Namespace) -> int:
    from segpipe.data.verify import format_summary, verify_dataset

    options: dict[str, Any] = {"root": None}  # else verify_dataset's defaults
    if args.configfile:
        options.update(_from_config(args.configfile, args.schema))
    given = {**_dataset_given(args), "unmapped": args.unmapped}
    options = _with_given(options, given)
    out = _json_output(args, options) if args.json else None
    summary = verify_dataset(threads=args.threads, **options)
    print(format_summary(summary, max_lines=args.max_lines))
    if out:
        write_text(out, json.dumps(summary, indent=2) + "\n")
    return EXIT_OK if summary["ok"] else EXIT_PROBLEMS


def plan_main(args: argparse.Namespace) -> int:
    """Fingerprint the dataset, plan, write the fingerprint and the config, say what to run."""
    from segpipe.planning.planner import (
        PlanRequest,
        output_paths,
        partial_config,
        plan_dataset,
        resolve_target,
        summary_lines,
        write_plan,
    )
    from segpipe.planning.render import default_schema

    logging.getLogger("segpipe").setLevel(logging.INFO)
    options = partial_config(args.configfile) if args.configfile else {"root": None}
    options = _with_given(options, _dataset_given(args))
    target = resolve_target(args)
    request = PlanRequest.from_options(
        options, name=args.name, target=target, sample=args.sample, seed=args.seed
    )
    out, fingerprint = output_paths(args.out, args.fingerprint, request, args.overwrite)
    plan = plan_dataset(request)
    write_plan(plan, out, fingerprint, args.schema or default_schema())
    print("\n".join(summary_lines(plan, out, fingerprint)))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "verify":
            return verify_main(args)
        if args.command == "plan":
            return plan_main(args)
        if args.command == "predict":
            return predict_main(args)
        if args.command == "export":
            return export_main(args)
        if args.command == "fetch-weights":
            return fetch_weights_main(args)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    except WriteError as exc:
        print(f"segpipe {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_WRITE
    except (FileNotFoundError, ValueError, UserError) as exc:
        print(f"segpipe {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # not through segpipe's writers: a full disk is still one line
        code = exc.errno or 0
        full = code in WRITE_ERRORS and code not in (errno.EACCES, errno.EPERM)
        cause = WRITE_ERRORS[code] if full else exc.strerror
        print(f"segpipe {args.command}: error: {exc.filename}: {cause}", file=sys.stderr)
        return EXIT_WRITE if full else EXIT_USAGE
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
