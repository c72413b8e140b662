# The check on the audited model: the findings' votes against the images of the samples that
# cast them (inputs and spec: rules/common.smk).


rule check:
    """Render a subsample of the voted samples and read each image with the check's reader."""
    input:
        unpack(check_inputs),
    output:
        samples=out("check_samples"),
        agreement=report(
            out("check_agreement"),
            caption="../resources/report/check_table.rst",
            category="1. Findings",
        ),
        confusion=out("check_confusion"),
        figure=report(
            out("check_figure"),
            caption="../resources/report/check.rst",
            category="1. Findings",
        ),
    log:
        logfile("check"),
    benchmark:
        benchfile("check")
    conda:
        "../envs/gpu.yaml"
    threads: model_threads
    resources:
        gpu=1,
    params:
        settings=canonical_json(SETTINGS),
        settings_hash=HASH,
        spec=check_spec(),
    script:
        "../scripts/check.py"
