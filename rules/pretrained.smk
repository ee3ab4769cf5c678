localrules:
    pretrained,


rule pretrained:
    """Download an encoder's pretrained weights into the cache folder (pretrained.cache) with
    smp's own code and record what was fetched. A local rule: it runs where Snakemake runs
    (the submitting machine, which has the network), once per distinct encoder and weights;
    train jobs read the cache offline."""
    output:
        record=str(record_path(PRETRAINED_CACHE, "{encoder}", "{weights}")),
    log:
        paths.log("pretrained", "{encoder}/{weights}"),
    benchmark:
        paths.benchmark("pretrained", "{encoder}/{weights}")
    wildcard_constraints:
        encoder="[^/]+",
        weights="[^/]+",
    conda:
        "../envs/segpipe.yaml"
    params:
        cache=verbatim(PRETRAINED_CACHE),
    script:
        "../scripts/pretrained.py"
