"""Assessment at the model's speed: rule predict's images/s, and the CPU share of a grid that
goes to assessing its models, for a commit before a change and for this checkout. Writes JSON.

1. **Predict** (``--cases``): one split of synthetic Oxford-layout images (segpipe's own
   generator, the demo's data), preprocessed for the case's model, predicted by
   ``segpipe.inference.predict_splits.predict_model`` with the options rule predict passes (each code's
   own ``predict_options`` of the validated config: its default overlays), one thread, in a
   fresh interpreter whose ``PYTHONPATH`` is that code's ``src``. The model is the case's
   config's, randomly initialised (no training; masks of one class compress a little better
   than a trained model's). Each figure is the best of ``--repeats`` passes over the images
   (checkpoint loading included, the imports not: they are recorded apart), before and after
   interleaved. Cases:

   - ``demo``: config/demo.yaml's model (UNet-ResNet18 at 64 x 64) on images of the demo's
     sizes (64-112 px);
   - ``grid``: the same model on images of Oxford-IIIT Pet's sizes (375-500 px), the grid of
     the next part;
   - ``oxford``: config/config.yaml's model (UNet-ResNet34 at 256 x 256) on those images.

   ``after`` is this checkout with its defaults; ``after_all_overlays`` the same with
   ``predict.overlays: all`` (every split image's overlay written, as ``before`` did).

2. **Grid** (``--grid``): ``snakemake --cores 2`` of a grid of ``--runs`` runs (train.lr) of
   the demo config on synthetic Oxford-layout data of Oxford's image sizes (``--grid-images``
   images: 35 % for test, 54.5 % of the rest for val, the rest to train), ``--epochs`` at
   64 x 64, one thread per job, in a fresh export of each code (`git archive`, its ``src``
   first on ``PYTHONPATH``). From Snakemake's benchmark files: the CPU seconds of each rule's
   jobs, and assessment (predict, evaluate, report, compare) over training (train).

The load average is recorded before and after each part: the figures are CPU seconds, which
other work on the machine inflates less than wall time, but does inflate.

    python tools/bench/bench_assess.py --before 8fc1d8b --out tools/bench/results/assess-cpu-2cores.json
    python tools/bench/bench_assess.py --before 8fc1d8b --quick --out /tmp/assess.json  # minutes
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from PIL import Image
from record import BIN, REPO, export, machine, rule_costs, write_result

THREADS = 1
CASES = {
    # case -> (config file, image sizes (min, max) of the synthetic images)
    "demo": ("config/demo.yaml", (64, 112)),
    "grid": ("config/demo.yaml", (375, 500)),
    "oxford": ("config/config.yaml", (375, 500)),
}
ASSESS_RULES = ("predict", "evaluate", "report", "compare")
GOALS = {"predict_speedup": 2.5, "assess_over_train_cpu": 0.15}

# Runs in a fresh interpreter with PYTHONPATH=<code>/src: times predict_model as rule predict
# calls it. argv[1]: the JSON spec.
PREDICT = """
import json, shutil, sys, time
STEPS = json.loads(sys.argv[2])
start = time.process_time()
from segpipe.workflow.config import load_schema, validate_config
try:  # this code's homes; an older commit's (inference.splits, config.predict_options) below
    from segpipe.inference.predict_splits import predict_model
    from segpipe.workflow.jobs import prediction
except ImportError:
    from segpipe.inference.splits import predict_model
    from segpipe.workflow.config import predict_options
    prediction = None
try:  # this code takes the options as one PredictOptions; an older commit as keywords
    from segpipe.inference.predict_splits import PredictOptions
    def predict(*args, **options):
        predict_model(*args, PredictOptions(**options))
except ImportError:
    predict = predict_model
imports = time.process_time() - start
spec = json.loads(sys.argv[1])
cfg = validate_config(spec["config"], load_schema(spec["schema"]), check_models=False)
if prediction is None:
    options = {**predict_options(cfg["predict"]), "batch_size": cfg["predict"]["batch_size"]}
else:  # as rule predict passes them; device and amp are the benchmark's own (below)
    job = prediction(cfg)
    options = {**job.tracked, "batch_size": job.untracked["batch_size"]}
    options.pop("device"), options.pop("amp")
runs = []
for i in range(spec["repeats"]):
    out = f"{spec['out']}/{i}"
    cpu, wall = time.process_time(), time.perf_counter()
    predict(
        [spec["checkpoint"]], {"test": spec["manifest"]}, [spec["array"]], [spec["manifest"]],
        out, threads=spec["threads"], device="cpu", amp=cfg["train"]["amp"], **options,
    )
    runs.append({"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall})
    shutil.rmtree(out)
steps = None
if spec["profile"]:  # one more pass under cProfile: its time by step
    import cProfile, pstats
    profile = cProfile.Profile(time.process_time)  # CPU seconds: other work inflates less
    profile.runcall(
        predict,
        [spec["checkpoint"]], {"test": spec["manifest"]}, [spec["array"]], [spec["manifest"]],
        f"{spec['out']}/profiled", threads=spec["threads"], device="cpu",
        amp=cfg["train"]["amp"], **options,
    )
    stats = pstats.Stats(profile).stats
    steps = {step: 0.0 for step in STEPS}
    for (file, _, name), (_, _, own, cumulative, _) in stats.items():
        for step, functions in STEPS.items():
            for suffix, function, whole in functions:
                if file.endswith(suffix) and name == function:
                    steps[step] += cumulative if whole else own
    steps["all"] = max(v[3] for v in stats.values())
print(json.dumps({"imports_cpu_s": imports, "options": options, "runs": runs, "steps": steps}))
"""
# A predict job's steps in a profile: step -> (file suffix, function, whether its cumulative
# time counts, else its own). Reading the image back, blending and the JPEG make an overlay.
STEPS = {
    "load model": [("models/checkpoints.py", "load_models", True)],
    "read arrays": [("torch/utils/data/dataloader.py", "__next__", True)],
    "forward": [("inference/engine.py", "score", True)],
    "upsample": [("inference/predict_splits.py", "_at_image_size", True)],
    "reduce": [
        ("~", "<method 'argmax' of 'torch._C.TensorBase' objects>", False),
        ("models/argmax.py", "class_ids", True),
    ],
    "encode mask (PNG)": [("PIL/PngImagePlugin.py", "_save", True)],
    "overlay: read image": [("data/images.py", "load_rgb", True)],
    "overlay: blend": [("data/colors.py", "overlay", True)],
    "overlay: encode (JPEG)": [("PIL/JpegImagePlugin.py", "_save", True)],
}


def load_config(path: str, extra: dict | None = None) -> dict:
    """A config file of this checkout, without its grid, with ``extra`` on top (one level)."""
    cfg = yaml.safe_load((REPO / path).read_text())
    cfg.pop("grid", None)
    for key, value in (extra or {}).items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


def make_split(root: Path, count: int, sizes: tuple[int, int], image_size: int) -> dict:
    """``count`` synthetic Oxford-layout images of ``sizes``, their manifest and their array
    preprocessed at ``image_size`` (this checkout's code, the format both codes read)."""
    from segpipe.data.preprocess import preprocess_split
    from segpipe.data.synthetic import make_oxford_like

    data = root / "data"
    if not data.exists():
        make_oxford_like(data, n_images=count, seed=0, min_size=sizes[0], max_size=sizes[1])
    rows = []
    for image in sorted((data / "images").glob("*.jpg")):
        with Image.open(image) as opened:
            width, height = opened.size
        mask = data / "annotations" / "trimaps" / f"{image.stem}.png"
        group = image.stem.rsplit("_", 1)[0]
        rows.append([image.stem, str(image), str(mask), group, height, width])
    manifest = root / "test.csv"
    pd.DataFrame(rows, columns=["id", "image", "mask", "group", "height", "width"]).to_csv(
        manifest, index=False
    )
    array = preprocess_split(manifest, root / f"test-{image_size}.npy", image_size=image_size)
    return {"manifest": str(manifest), "array": str(array), "images": len(rows)}


def write_checkpoint(path: Path, cfg: dict) -> str:
    """A randomly initialised checkpoint of ``cfg``'s model (validated by this checkout)."""
    from segpipe.models.checkpoints import model_from_config, save_checkpoint
    from segpipe.workflow.config import load_schema, validate_config

    valid = validate_config(cfg, load_schema(REPO / "config" / "schema.yaml"), check_models=False)
    save_checkpoint(path, {"model": model_from_config(valid).state_dict(), "config": valid})
    return str(path)


def time_predict(src: Path, spec: dict) -> dict:
    """The PREDICT child's record for ``spec`` with the code of ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run(
        [sys.executable, "-c", PREDICT, json.dumps(spec), json.dumps(STEPS)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"predicting with {src} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def predict_case(name: str, codes: dict[str, Path], work: Path, args) -> dict:
    """Images/s of one case for every code, the codes interleaved pass by pass."""
    config_file, sizes = CASES[name]
    cfg = load_config(config_file)
    image_size = int(cfg["train"]["image_size"])
    split = make_split(work / f"{sizes[0]}-{sizes[1]}", args.images, sizes, image_size)
    checkpoint = write_checkpoint(work / f"{name}.pt", cfg)
    variants = {
        "before": (codes["before"], cfg),
        "after": (codes["after"], cfg),
        "after_all_overlays": (
            codes["after"],
            load_config(config_file, {"predict": {"overlays": "all"}}),
        ),
    }
    records: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for variant, (src, config) in variants.items():
            spec = {
                "profile": args.profile and repeat == 0,
                "config": config,
                "schema": str(src.parent / "config" / "schema.yaml"),
                "checkpoint": checkpoint,
                **{k: split[k] for k in ("manifest", "array")},
                "out": str(work / f"out-{name}-{variant}"),
                "threads": THREADS,
                "repeats": 1,
            }
            got = time_predict(src, spec)
            record = records.setdefault(variant, {"options": got["options"], "runs": []})
            record["runs"] += got["runs"]
            record["imports_cpu_s"] = min(record.get("imports_cpu_s", 1e9), got["imports_cpu_s"])
            if got["steps"]:
                record["profile_s"] = {k: round(v, 3) for k, v in got["steps"].items()}
    result = {
        "config": config_file,
        "model": f"{cfg['train']['arch']}-{cfg['train']['encoder']}",
        "image_size": image_size,
        "images": split["images"],
        "image_sizes": f"{sizes[0]}-{sizes[1]} px",
        "batch_size": cfg["predict"]["batch_size"],
    }
    for variant, record in records.items():
        best = min(record["runs"], key=lambda run: run["cpu_s"])
        result[variant] = {
            "options": record["options"],
            "cpu_s": round(best["cpu_s"], 2),
            "wall_s": round(best["wall_s"], 2),
            "images_per_cpu_s": round(split["images"] / best["cpu_s"], 2),
            "imports_cpu_s": round(record["imports_cpu_s"], 2),
            **({"profile_s": record["profile_s"]} if "profile_s" in record else {}),
        }
    result["speedup"] = round(
        result["after"]["images_per_cpu_s"] / result["before"]["images_per_cpu_s"], 2
    )
    print(
        f"predict {name}: {result['before']['images_per_cpu_s']} -> {result['after']['images_per_cpu_s']} images per CPU second ({result['speedup']}x)",
        file=sys.stderr,
    )
    return result


def grid_config(args) -> dict:
    """The grid's config on top of config/demo.yaml."""
    lrs = [0.003, 0.01, 0.03, 0.001, 0.006, 0.02][: args.runs]
    test_fraction = 0.353  # 300 of 850 test images; val about 300, train about 250
    return {
        "run_name": "assess-grid",
        "grid": {"train.encoder": ["resnet18"], "train.lr": lrs},
        "dataset": {
            "synthetic": {
                "n_images": args.grid_images,
                "seed": 0,
                "min_size": 375,
                "max_size": 500,
                "test_fraction": test_fraction,
            }
        },
        "split": {"seed": 42, "val_fraction": 0.545},
        "train": {"epochs": args.epochs},
        "resources": {rule: {"threads": 1} for rule in ("train", "predict", "evaluate", "report")},
    }


def run_grid(rev: str, extra: dict, timeout: int) -> dict:
    """The grid in a fresh export of ``rev``: its rules' CPU seconds and the ratio."""
    with tempfile.TemporaryDirectory(prefix="bench-assess-", dir=REPO.parent) as tmp:
        work = Path(tmp)
        commit = export(rev, work)
        (work / "config" / "bench.yaml").write_text(yaml.safe_dump(extra))
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(work / "src"),
        }
        cmd = [str(BIN / "snakemake"), "--cores", "2", "--configfile", "config/demo.yaml"]
        start = time.perf_counter()
        proc = subprocess.run(
            [*cmd, "config/bench.yaml"],
            cwd=work,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"the grid failed in {work}:\n{(proc.stdout + proc.stderr)[-6000:]}")
        rules = rule_costs(work)
        counts = {
            split: len(pd.read_csv(work / "results" / "split" / "base" / f"{split}.csv"))
            for split in ("train", "val", "test")
        }
    train = rules["train"]["cpu_s"]
    assess = sum(rules.get(rule, {}).get("cpu_s", 0.0) for rule in ASSESS_RULES)
    print(f"grid {rev}: assessment {assess:.0f} s / training {train:.0f} s CPU", file=sys.stderr)
    return {
        "commit": commit[:12],
        "wall_s": round(wall, 1),
        "images": counts,
        "rules": rules,
        "assess_cpu_s": round(assess, 2),
        "train_cpu_s": round(train, 2),
        "assess_over_train_cpu": round(assess / train, 3),
    }


def load() -> float:
    return round(os.getloadavg()[0], 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the commit to compare with")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--images", type=int, default=100, help="images per predict case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-grid", dest="grid", action="store_false")
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="leave out the profiled pass per case and code (seconds by step under cProfile)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of the grid")
    parser.add_argument("--epochs", type=int, default=9, help="epochs per run of the grid")
    parser.add_argument("--grid-images", type=int, default=850, help="synthetic images of the grid")
    parser.add_argument("--timeout", type=int, default=7200, help="seconds per grid")
    parser.add_argument("--quick", action="store_true", help="a tiny scale, to check the script")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.repeats, args.runs, args.epochs, args.grid_images = 12, 1, 2, 1, 40
    result: dict = {"benchmark": "assessment at the model's speed", **machine()}
    result["command"] = " ".join(["python", "tools/bench/bench_assess.py", *(argv or sys.argv[1:])])
    result["threads"] = THREADS
    with tempfile.TemporaryDirectory(prefix="bench-assess-", dir=REPO.parent) as tmp:
        before = Path(tmp) / "before"
        commit = export(args.before, before)
        codes = {"before": before / "src", "after": REPO / "src"}
        result["before_commit"] = commit[:12]
        result["after_commit"] = git_head()
        result["load_average_1min"] = {"before_predict": load()}
        result["predict"] = {
            name: predict_case(name, codes, Path(tmp) / "predict", args) for name in args.cases
        }
        result["load_average_1min"]["after_predict"] = load()
    if args.grid:
        extra = grid_config(args)
        result["grid"] = {"overrides": extra, "epochs": args.epochs, "runs": args.runs}
        result["grid"]["before"] = run_grid(args.before, extra, args.timeout)
        result["load_average_1min"]["between_grids"] = load()
        result["grid"]["after"] = run_grid("HEAD", extra, args.timeout)
        result["load_average_1min"]["after_grid"] = load()
    result["goals"] = GOALS
    write_result(args.out, result)
    return 0


def git_head() -> str:
    """This checkout's commit, with ``+changes`` when its files differ from it."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()[:12]
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"{head}+changes" if dirty else head


if __name__ == "__main__":
    sys.exit(main())
