localrules:
    compare,


rule compare:
    """All runs side by side: leaderboard (ranked by validation mIoU), what each run changes,
    learning curves, per-class IoU, paired statistics against the selected run on the test split,
    and with infer.images the selected run's predictions of those images (a gallery).
    """
    input:
        lambda wildcards: LAYOUT.compare_inputs(),
    output:
        html=paths.compare_file("report.html"),
        leaderboard=paths.compare_file("leaderboard.csv"),
        curves=report(
            paths.compare_file("figures/learning_curves.png"),
            caption="captions/compare_curves.rst",
            category="Comparison",
        ),
        per_class=report(
            paths.compare_file("figures/per_class.png"),
            caption="captions/compare_per_class.rst",
            category="Comparison",
        ),
    log:
        paths.log("compare", "compare"),
    benchmark:
        paths.benchmark("compare", "compare")
    conda:
        "../envs/segpipe.yaml"
    threads: res("report", "threads")
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    params:
        runs=verbatim([LAYOUT.compare_run(run) for run in RUNS]),
        classes=verbatim(config["classes"]),
        ignore_index=config["ignore_index"],
        # compare.* of the config, the title resolved (null: "<report.title> (comparison)").
        compare={
            **config["compare"],
            "title": config["compare"]["title"]
            or f"{config['report']['title']} (comparison)",
        },
        # The infer.images predictions of the selected run, how many to show and each run's
        # overlay_alpha (to draw them where predict.overlays is none); null without.
        infer=verbatim(
            {
                "predictions": LAYOUT.infer_dir(),
                "gallery_size": 2 * config["report"]["gallery_size"],
                "overlay_alpha": {
                    run: RUNS[run].config["predict"]["overlay_alpha"] for run in RUNS
                },
            }
            if INFER_IMAGES
            else None
        ),
    script:
        "../scripts/compare.py"
