"""Rule report: see segpipe.reporting.run_report.build_report."""

from pathlib import Path

from segpipe.logs import setup_logging
from segpipe.reporting.run_report import ReportInputs, build_report

setup_logging(snakemake.log[0])
inp, params = snakemake.input, snakemake.params
folds = list(inp.history) if inp.get("crossval_metrics") else ()
no_tta = (  # the scores without the predict.tta flips, an input only with flips
    {
        "metrics": inp.no_tta_metrics,
        "per_class": inp.no_tta_per_class,
        "val_metrics": list(inp.tta_val_metrics),
        "val_metrics_no_tta": list(inp.no_tta_val_metrics),
    }
    if params.tta
    else None
)
inputs = ReportInputs(
    metrics_json=inp.metrics,
    val_metrics_json=inp.val_metrics,
    per_class_csv=inp.per_class,
    confusion_csv=inp.confusion,
    per_image_csv=inp.per_image,
    history_csv=list(inp.history)[0],
    fold_histories=folds,
    crossval_json=inp.get("crossval_metrics"),
    crossval_folds_csv=inp.get("crossval_folds"),
    model=params.model,
    manifest_csv=inp.manifest,
    predictions_dir=inp.predictions,
    quarantine_csv=inp.quarantine,
    class_presence_csv=inp.classes,
    fold_class_presence_csvs=list(inp.fold_classes),
    class_names=params.classes,
    ignore_index=params.ignore_index,
    config=params.config,
    benchmarks=params.benchmarks,
    repo_dir=snakemake.scriptdir + "/..",
    tta=params.tta,
    no_tta=no_tta,
    infer_dir=inp.get("infer"),
    **params.report,
)
build_report(snakemake.output.html, Path(snakemake.output.confusion).parent, inputs)
