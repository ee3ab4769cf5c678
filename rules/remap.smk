rule remap:
    """Map raw mask values to class ids; write uint8 PNG masks, an index and a quarantine list."""
    input:
        dataset=dataset_dir(),
    output:
        masks=directory("results/remap/masks"),
        index="results/remap/index.csv",
        quarantine="results/remap/quarantine.csv",
    log:
        "logs/remap/remap.log",
    benchmark:
        "benchmarks/remap/remap.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: res("remap", "threads")
    resources:
        mem_mb=res("remap", "mem_mb"),
        runtime=res("remap", "runtime"),
    params:
        layout=dataset_layout(),
        images_dir=config["dataset"]["images_dir"],
        masks_dir=config["dataset"]["masks_dir"],
        table=config["remap"]["table"],
        ignore_value=config["remap"]["ignore_value"],
        unmapped=config["remap"]["unmapped"],
        max_quarantine_fraction=config["remap"]["max_quarantine_fraction"],
        ignore_index=config["ignore_index"],
    script:
        "../scripts/remap.py"
