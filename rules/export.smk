rule export:
    """An ONNX file of a trained model (batch, height and width free; classes and training size
    in its metadata) for `segpipe predict --onnx` or any onnxruntime. Not part of rule all: ask
    for results/runs/<run>/train/model.onnx by name.
    """
    input:
        checkpoint="results/runs/{model}/train/best.pt",
    output:
        onnx="results/runs/{model}/train/model.onnx",
    log:
        "logs/export/{model}.log",
    benchmark:
        "benchmarks/export/{model}.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: model_res("predict", "threads")
    resources:
        mem_mb=model_res("predict", "mem_mb"),
        runtime=model_res("predict", "runtime"),
    script:
        "../scripts/export.py"
