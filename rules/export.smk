rule export:
    """An ONNX file of a trained model (batch, height and width free; classes and training size
    in its metadata) for `segpipe predict --onnx` or any onnxruntime. Not part of rule all: ask
    for results/runs/<run>/train/model.onnx by name.
    """
    input:
        # The model's training, or the one it shares (segpipe.workflow.layout).
        checkpoint=lambda wildcards: LAYOUT.checkpoints(wildcards.model)[0],
    output:
        onnx=paths.train_file("model.onnx"),
    log:
        paths.log("export", "{model}"),
    benchmark:
        paths.benchmark("export", "{model}")
    conda:
        "../envs/segpipe.yaml"
    threads: res("predict", "threads", of_run=True)
    resources:
        mem_mb=res("predict", "mem_mb", of_run=True),
        runtime=res("predict", "runtime", of_run=True),
    script:
        "../scripts/export.py"
