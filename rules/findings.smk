# The run's headline: the estimated share of each concept's generated samples that show each
# identity value, read from the validated readout's per-sample votes, the text control beside it
# (inputs and outputs: rules/common.smk).


rule findings:
    """Estimated identity shares per concept (validated readout), figures and references."""
    input:
        unpack(findings_inputs),
    output:
        table=report(
            out("findings"),
            caption="../resources/report/findings_table.rst",
            category="1. Findings",
        ),
        figures=[
            report(
                out("findings_figure", axis=axis),
                caption="../resources/report/findings.rst",
                category="1. Findings",
                subcategory=axis,
            )
            for axis in findings_axes()
        ],
        references=report(
            out("findings_references"),
            caption="../resources/report/findings_references.rst",
            category="1. Findings",
        ),
    log:
        logfile("findings"),
    benchmark:
        benchfile("findings")
    localrule: True
    conda:
        "../envs/cpu.yaml"
    params:
        spec=canonical_json(
            {
                "readout": FINDINGS_READOUT,
                "method_validated": FINDINGS_VALIDATED,
                "axes": config["concepts"]["descriptors"]["axes"],
                "references": {
                    name: {**ref, "scale": ref.get("scale", 1)}
                    for name, ref in FINDINGS_REFERENCES.items()
                },
                "published_names": [
                    name
                    for name, r in FINDINGS_REFERENCES.items()
                    if r.get("published")
                ],
            }
        ),
        bootstrap=BOOTSTRAP,
    script:
        "../scripts/findings.py"
