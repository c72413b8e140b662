# The run's headline: the estimated share of each concept's generated samples that show each
# identity value, read from the validated readout's per-sample votes, the text control beside it.
FINDINGS_READOUT, FINDINGS_VALIDATED = findings_readout(READOUTS)
FINDINGS_REFERENCES = ANALYSIS["findings"]["references"]
#: The published cosine score, compared with each reference beside the shares.
PUBLISHED_READOUT = PUBLISHED if PUBLISHED in READOUTS else FINDINGS_READOUT


def findings_axes():
    return list(config["concepts"]["descriptors"]["axes"])


def findings_inputs(wildcards):
    """The findings readout's votes, the text control's (when stored), the reference tables
    and the published score tables they name (editing any of them reruns the findings)."""
    inputs = {
        "votes": f"{TREE}/{FINDINGS_READOUT}/analysis/descriptors/votes.tsv",
        "published": [
            f"{TREE}/{PUBLISHED_READOUT}/analysis/defaults/{name}/bias.tsv"
            for name in findings_published()
        ],
    }
    inputs["references"] = [ref["file"] for ref in FINDINGS_REFERENCES.values()]
    if CONTROL in READOUTS:
        inputs["control"] = f"{TREE}/{CONTROL}/analysis/descriptors/votes.tsv"
    return inputs


def findings_published():
    return [r["published"] for r in FINDINGS_REFERENCES.values() if r.get("published")]


def findings_outputs():
    if not descriptors_on():
        return []
    return [f"{TREE}/findings/findings.tsv", f"{TREE}/findings/references.tsv"]


rule findings:
    """Estimated identity shares per concept (validated readout), figures and references."""
    input:
        unpack(findings_inputs),
    output:
        table=report(
            f"{TREE}/findings/findings.tsv",
            caption="../resources/report/findings_table.rst",
            category="1. Findings",
        ),
        figures=[
            report(
                f"{TREE}/findings/{axis}.png",
                caption="../resources/report/findings.rst",
                category="1. Findings",
                subcategory=axis,
            )
            for axis in findings_axes()
        ],
        references=report(
            f"{TREE}/findings/references.tsv",
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
                "validated": FINDINGS_VALIDATED,
                "references": {
                    name: {**ref, "scale": ref.get("scale", 1)}
                    for name, ref in FINDINGS_REFERENCES.items()
                },
                "published_names": [
                    name for name, r in FINDINGS_REFERENCES.items() if r.get("published")
                ],
            }
        ),
        bootstrap=BOOTSTRAP,
    script:
        "../scripts/findings.py"
