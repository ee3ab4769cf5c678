rule split:
    """Seeded, stratified train/val/test manifests (honouring official lists when present), once
    per distinct split setting of the runs."""
    input:
        index=rules.remap.output.index,
    output:
        train=paths.split_manifest("train"),
        val=paths.split_manifest("val"),
        test=paths.split_manifest("test"),
        classes=paths.split_manifest("classes"),
    log:
        paths.log("split", "{splitting}"),
    benchmark:
        paths.benchmark("split", "{splitting}")
    conda:
        "../envs/segpipe.yaml"
    threads: res("split", "threads")
    resources:
        mem_mb=res("split", "mem_mb"),
        runtime=res("split", "runtime"),
    params:
        split=lambda wildcards: SPLITTINGS[wildcards.splitting],
        classes=verbatim(config["classes"]),
    script:
        "../scripts/split.py"


rule folds:
    """Fold `fold` of the k-fold cross-validation (split.folds: k) of a split's train+val pool:
    its images are the fold model's val part, the other folds' its train part. Seeded and
    stratified like the split; the test split is not touched."""
    input:
        index=rules.remap.output.index,
        pool=[rules.split.output.train, rules.split.output.val],
    output:
        train=paths.fold_manifest("train"),
        val=paths.fold_manifest("val"),
        classes=paths.fold_manifest("classes"),
    log:
        paths.log("folds", "{splitting}/k{k}/fold{fold}"),
    benchmark:
        paths.benchmark("folds", "{splitting}/k{k}/fold{fold}")
    conda:
        "../envs/segpipe.yaml"
    threads: res("split", "threads")
    resources:
        mem_mb=res("split", "mem_mb"),
        runtime=res("split", "runtime"),
    params:
        folds=lambda wildcards: int(wildcards.k),
        fold=lambda wildcards: int(wildcards.fold),
        seed=lambda wildcards: SPLITTINGS[wildcards.splitting]["seed"],
        stratify=lambda wildcards: SPLITTINGS[wildcards.splitting]["stratify"],
        classes=verbatim(config["classes"]),
    script:
        "../scripts/folds.py"
