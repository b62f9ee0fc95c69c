"""One function per key of paper_values.json computing our numbers beside the paper's.

`TABLES` maps every table key of the paper's values (all but "_about") to the function
that measures ours from the stage outputs; `stage_analysis` runs them all and stores the
entries. A key without a function is an error, so a table cannot silently go missing.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from keras_dkg.errors import InputError
from keras_dkg.reproduce import tables_cipher, tables_domain, tables_keys, tables_methods
from keras_dkg.reproduce.runner import Context, write_json
from keras_dkg.reproduce.tablekit import Artifacts

TABLES = {
    "training": tables_keys.training,
    "table_I_generator": tables_keys.table_I_generator,
    "table_II_discriminator": tables_keys.table_II_discriminator,
    "table_III_key_entropy": tables_keys.table_III_key_entropy,
    "table_IV_key_sensitivity": tables_keys.table_IV_key_sensitivity,
    "table_V_VII_entropy": tables_cipher.table_V_VII_entropy,
    "table_VIII_X_similarity": tables_cipher.table_VIII_X_similarity,
    "table_XI_XIII_correlation": tables_cipher.table_XI_XIII_correlation,
    "table_XIV_chosen_plaintext_two_ciphertexts": tables_keys.table_XIV_chosen_plaintext_two_ciphertexts,
    "table_XV_chosen_ciphertext_two_plaintexts": tables_keys.table_XV_chosen_ciphertext_two_plaintexts,
    "table_XVI_attack_networks": tables_keys.table_XVI_attack_networks,
    "table_XVII_key_entropy_by_method": tables_methods.table_XVII_key_entropy_by_method,
    "table_XVIII_nist_p_values": tables_methods.table_XVIII_nist_p_values,
    "table_XIX_key_generation_seconds": tables_methods.table_XIX_key_generation_seconds,
    "table_XX_cipher_entropy_by_method": tables_methods.table_XX_cipher_entropy_by_method,
    "table_XXI_hyperparameters_mean_key_entropy": tables_domain.table_XXI_hyperparameters_mean_key_entropy,
    "section_V_C_transformation_domain": tables_domain.section_V_C_transformation_domain,
    "ideal_values_for_random_uint8": tables_domain.ideal_values_for_random_uint8,
}
EXTRA = {"attacks": tables_cipher.attacks_table}
PACKAGED = "paper_values.json"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "paper" / "paper_values.json"


def table_keys(paper: dict) -> list[str]:
    return [k for k in paper if not k.startswith("_")]


def load_paper_values(path: str | Path | None = None) -> tuple[dict, str]:
    """The paper's values: `path`, else ../shared/paper/paper_values.json beside the repo, else the packaged copy."""
    candidates = [Path(path)] if path else [SHARED]
    for candidate in candidates:
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8")), str(candidate)
    if path:
        raise InputError(f"{path}: no such paper values file")
    packaged = files("keras_dkg.reproduce").joinpath(PACKAGED)
    return json.loads(packaged.read_text(encoding="utf-8")), f"keras_dkg/reproduce/{PACKAGED} (packaged copy)"


def check_coverage(paper: dict) -> None:
    missing = [k for k in table_keys(paper) if k not in TABLES]
    if missing:
        raise InputError(f"paper values have table keys with no reproduction function: {', '.join(missing)}")


def stage_analysis(ctx: Context) -> dict:
    check_coverage(ctx.paper)
    art = Artifacts(ctx)
    entries = {}
    for key in [*table_keys(ctx.paper), *EXTRA]:
        function = TABLES.get(key) or EXTRA[key]
        ctx.log(f"  table {key}")
        entries[key] = function(art, ctx.paper.get(key))
    write_json(ctx.path("analysis", "tables.json"), entries)
    return {"tables": list(entries), "file": "analysis/tables.json"}
