"""One row of headline numbers from a diagnosis: what the study tables and the paper-scale
summary print, computed once here so both read the same definitions."""

from __future__ import annotations


def key_row(report: dict) -> dict:
    """Entropy, χ² p, saturation, NPCR/UACI, v1 nonce agreement, lag-1/lag-4 |r|, the top spectral
    peak (height × median, frequency in cycles/pixel) and, when measured, the NIST pass counts."""
    keys = report["keys"]
    bytes_, auto = keys["bytes"], keys["autocorrelation"]
    peak = keys["spectrum"]["peaks"][0]

    def lag(n: int) -> float:
        return max(abs(auto["horizontal"][n - 1]), abs(auto["vertical"][n - 1]))

    row = {"entropy": bytes_["entropy_per_image"], "chi2_p": bytes_["chi2_p_pooled"],
           "saturated": bytes_["zero_share"] + bytes_["full_share"],
           "npcr": report["one_pixel"]["npcr"], "uaci": report["one_pixel"]["uaci"],
           "nonce_equal_pct": 100 * report["nonce_keys"]["equal_share"], "lag1": lag(1), "lag4": lag(4),
           "peak_times_median": peak["times_median"], "peak_frequency": max(abs(peak["fy"]), abs(peak["fx"]))}
    if "nist" in report:
        row["nist_strict"] = report["nist"]["strict"]["passed"]
        row["nist_proportion"] = report["nist"]["by_proportion"]["passed"]
        row["nist_applicable"] = report["nist"]["strict"]["applicable"]
    return row
