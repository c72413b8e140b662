# A comparison of the audited model (the base) with a second one (config `compare:`): the new
# model's tree is made by this workflow's own rules, imported in the Snakefile as the module
# `compared_model` (rules `compared_*`); `diff` reads both trees (paths: scalex.layout).


rule diff:
    """Both models' findings side by side, with paired differences, q-values and flags."""
    input:
        unpack(diff_inputs),
    output:
        table=report(
            out("comparison"),
            caption="../resources/report/comparison_table.rst",
            category="2. Comparison",
        ),
        flagged=report(
            out("comparison_flagged"),
            caption="../resources/report/comparison_flagged.rst",
            category="2. Comparison",
        ),
        descriptors=out("comparison_descriptors"),
        clusters=out("comparison_clusters"),
        summary=out("comparison_summary"),
        figures=[
            report(
                out("comparison_figure", axis=axis),
                caption="../resources/report/comparison.rst",
                category="2. Comparison",
                subcategory=axis,
            )
            for axis in findings_axes()
        ],
    log:
        logfile("diff", "compared"),
    benchmark:
        benchfile("diff", "compared")
    conda:
        "../envs/cpu.yaml"
    params:
        spec=canonical_json(
            {
                "readout": FINDINGS_READOUT,
                "validated": COMPARISON_VALIDATED,
                "control": CONTROL if CONTROL in READOUTS else None,
                "axes": config["concepts"]["descriptors"]["axes"],
                "targets": descriptor_targets(),
                "concepts": descriptor_concepts(),
                "fdr": (config["compare"] or {}).get("fdr"),
                "tap": config["directions"]["tap"],
                "space": config["directions"]["space"],
                "base": {"tree": TREE, "settings_hash": HASH, "settings": SETTINGS},
                "new": {
                    "tree": COMPARED_TREE,
                    "settings_hash": COMPARED_HASH,
                    "settings": COMPARED_SETTINGS,
                },
            }
        ),
        bootstrap=BOOTSTRAP,
    script:
        "../scripts/diff.py"
