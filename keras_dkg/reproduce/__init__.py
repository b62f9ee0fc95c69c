"""Regenerate the DeepKeyGen paper's experimental section (Sections IV–V) with our pipeline.

`python tools/reproduce_paper.py --quick|--full --out DIR` (docs/reproduce.md) runs the
stages data → domains → architecture → train → export → keys → encrypt → hparams →
analysis and writes DIR/README.md, DIR/results.json and DIR/figures/. Modules:
profiles (sizes), runner (folder, markers, log), datasets (plaintexts, honestly
labelled), stages and hparams (the pipeline), tables* (one function per paper table),
findings, figures, report, cli.
"""
