# What infer_selected receives of each run, the comparison may select any (segpipe.workflow.jobs).
_SELECTED = jobs.selected_prediction(
    {run: RUNS[run].config for run in RUNS},
    {run: LAYOUT.checkpoints(RUNS[run].primary.name) for run in RUNS},
)


rule infer:
    """Predict every image of the infer.images folder with the run's model (with folds: the fold
    ensemble, else fold 0): class-id masks and (unless predict.overlays is none) overlays at
    each image's own size, and summary.csv listing every file, those that are no readable
    image as skipped."""
    input:
        images=as_inputs(INFER_IMAGES),
        checkpoints=lambda wildcards: LAYOUT.checkpoints(
            RUNS[wildcards.run].primary.name
        ),
    output:
        predictions=directory(paths.infer_dir()),
    log:
        paths.log("infer", "{run}"),
    benchmark:
        paths.benchmark("infer", "{run}")
    conda:
        "../envs/segpipe.yaml"
    threads: res("predict", "threads", of_run=True)
    resources:
        mem_mb=res("predict", "mem_mb", of_run=True),
        runtime=res("predict", "runtime", of_run=True),
        # Slurm: --gpus=[gpu_model:]1 (one process, one GPU); ignored locally.
        gpu=1,
        gpu_model=res("predict", "gpu_model", of_run=True),
    params:
        folder=verbatim(config["infer"]["images"]),
        # Files whose name cannot be an input: a change reruns the prediction all the same.
        unlisted=verbatim(infer_fingerprint()),
        classes=verbatim(config["classes"]),
        # predict.batch_size reaches the job untracked (segpipe.params): a change reruns nothing.
        predict=tracked_of(jobs.prediction, folder=True),
        untracked=untracked_of(jobs.prediction, folder=True),
    script:
        "../scripts/infer.py"


rule infer_selected:
    """With experiments or a grid: predict the images of infer.images with the run the
    comparison selects (best validation mIoU; segpipe.evaluation.selection.selected_run), chosen from the
    same validation scores as its leaderboard; run.json names it."""
    input:
        images=as_inputs(INFER_IMAGES),
        scores=lambda wildcards: LAYOUT.selection_inputs(),
        checkpoints=sorted(
            {path for model in _SELECTED[0].values() for path in model["checkpoints"]}
        ),
    output:
        predictions=directory(paths.compare_file("infer")),
    log:
        paths.log("infer_selected", "infer_selected"),
    benchmark:
        paths.benchmark("infer_selected", "infer_selected")
    conda:
        "../envs/segpipe.yaml"
    threads: res("predict", "threads")
    resources:
        mem_mb=res("predict", "mem_mb"),
        runtime=res("predict", "runtime"),
        gpu=1,
        gpu_model=res("predict", "gpu_model"),
    params:
        folder=verbatim(config["infer"]["images"]),
        unlisted=verbatim(infer_fingerprint()),
        classes=verbatim(config["classes"]),
        runs=verbatim(LAYOUT.selection_runs()),
        models=verbatim(_SELECTED[0]),
        # predict.batch_size of each run, untracked (segpipe.params): a change reruns nothing.
        untracked=_SELECTED[1],
    script:
        "../scripts/infer_selected.py"
