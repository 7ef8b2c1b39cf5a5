"""The paper's published numbers (Yi et al., AAAI 2025; Llama-3-8B, n = 1000 fine-tuning rows, BeaverTails HS by
the beaver-dam judge), copied from its tables for the side-by-side report (nlsr_core.report.paper_tables).
Rows keep the paper's names; a row nlsr has no counterpart for (Vlguard, Vaccine, Lisa, ConstrainedSFT: defences
that need extra training) is kept for reference. Values are percentages.
"""
from __future__ import annotations

RATIOS = (0.01, 0.05, 0.1, 0.2, 0.3)

# Table 1: SST-2, DPO, p -> (HS, FA)
TABLE1 = {
    "Non-Aligned": dict(zip(RATIOS, ((70.9, 94.8), (77.4, 94.7), (78.9, 95.4), (77.2, 94.8), (77.2, 94.8)))),
    "Aligned": dict(zip(RATIOS, ((34.2, 94.7), (56.6, 94.8), (67.9, 95.0), (72.9, 95.1), (73.8, 94.6)))),
    "Vlguard": dict(zip(RATIOS, ((41.0, 95.1), (53.2, 95.1), (62.7, 95.6), (66.6, 94.6), (69.3, 94.7)))),
    "Vaccine": dict(zip(RATIOS, ((37.0, 95.1), (58.8, 94.7), (68.2, 94.9), (72.5, 95.4), (73.2, 94.7)))),
    "Lisa": dict(zip(RATIOS, ((36.9, 64.3), (45.0, 63.3), (50.8, 62.7), (56.3, 61.9), (60.1, 72.7)))),
    "ConstrainedSFT": dict(zip(RATIOS, ((36.4, 95.2), (50.7, 95.1), (55.3, 95.5), (58.2, 95.4), (63.1, 94.9)))),
    "SafeLoRA (τ = 0.6)": dict(zip(RATIOS, ((37.5, 94.3), (52.1, 94.0), (57.4, 94.1), (59.0, 94.0), (59.3, 93.6)))),
    "NLSR": dict(zip(RATIOS, ((8.1, 94.9), (20.4, 95.2), (27.6, 95.2), (30.5, 95.5), (27.3, 94.7)))),
}

ALIGNERS = ("sft", "dpo", "orpo", "kto", "simpo")
# Table 2: SST-2, p = 0.05, aligner -> (HS, FA)
TABLE2 = {
    "Aligned": dict(zip(ALIGNERS, ((53.3, 94.9), (56.6, 94.8), (61.5, 94.3), (55.1, 94.7), (56.7, 94.7)))),
    "Vlguard": dict(zip(ALIGNERS, ((44.8, 95.1), (53.2, 95.1), (50.1, 93.8), (52.1, 94.7), (53.6, 94.7)))),
    "Lisa": dict(zip(ALIGNERS, ((40.7, 60.4), (45.0, 63.3), (36.7, 51.1), (47.9, 58.4), (49.8, 59.9)))),
    "ConstrainedSFT": dict(zip(ALIGNERS, ((47.0, 95.0), (50.7, 95.4), (51.6, 94.2), (47.5, 95.1), (51.1, 94.9)))),
    "SafeLoRA (τ = 0.6)": dict(zip(ALIGNERS, ((50.0, 95.0), (52.1, 94.0), (58.2, 94.4), (51.0, 94.7), (51.5, 93.9)))),
    "NLSR": dict(zip(ALIGNERS, ((46.6, 93.6), (20.4, 95.2), (31.9, 94.3), (17.0, 95.3), (19.4, 95.1)))),
}

# Table 3: p = 0.05, DPO, task -> (HS, FA)
TABLE3 = {
    "Non-Aligned": {"agnews": (78.5, 88.6), "gsm8k": (80.4, 50.4)},
    "Aligned": {"agnews": (55.7, 88.8), "gsm8k": (53.2, 51.0)},
    "Vlguard": {"agnews": (50.7, 88.4), "gsm8k": (51.0, 48.6)},
    "Lisa": {"agnews": (40.7, 60.2), "gsm8k": (40.7, 11.6)},
    "ConstrainedSFT": {"agnews": (42.8, 88.6), "gsm8k": (95.7, 51.0)},
    "SafeLoRA (τ = 0.6)": {"agnews": (48.5, 75.7), "gsm8k": (45.0, 27.2)},
    "NLSR": {"agnews": (19.7, 87.8), "gsm8k": (15.4, 55.6)},
}

# Table 4: pre-amplification at P_SR 0.8, P_L 0.5, task -> (HS, FA)
TABLE4 = {
    "w/o pre-amplification": {"agnews": (44.4, 86.9), "gsm8k": (41.5, 54.6)},
    "w/ pre-amplification": {"agnews": (29.9, 88.0), "gsm8k": (25.1, 53.0)},
}

# Table 6: HS on HarmBench (transfer), p -> HS
TABLE6 = {
    "Aligned": {0.01: 50.2, 0.1: 76.1},
    "Vlguard": {0.01: 45.3, 0.1: 68.0},
    "Vaccine": {0.01: 35.2, 0.1: 77.4},
    "Lisa": {0.01: 49.1, 0.1: 66.7},
    "SafeLoRA": {0.01: 37.7, 0.1: 69.2},
    "NLSR": {0.01: 19.0, 0.1: 23.3},
}

# The figures' claims as the paper's text states them (no numeric table is published for Figs. 3-6).
FIGURE_CLAIMS = {
    "fig3": "fewer safety-critical neurons (higher P_SR) give more broken layers at the same τ; at τ = 0.2 ORPO's "
            "broken layers are fewer than 20% of KTO's",
    "fig4": "the broken-layer sets of lowrank, Wanda and SNIP have similarity often above 0.9 across P_L; the "
            "neuron overlap coefficient in broken layers is consistently above 0.6 (P_SR 0.7, P_L 0.5)",
    "fig5": "β = 0.9 rejects nearly all harmful instructions with minimal loss of utility",
    "fig6": "pre-amplification lowers HS at every P_SR",
}
