"""`nndsl check`'s summary: one row per layer, block instances named by their block, true counts."""
from __future__ import annotations

import re
from pathlib import Path

import nndsl
from nndsl.summary import rows, summarize

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_gpt_summary_rows_name_block_instances_and_sum_to_the_module():
    c = nndsl.build(EXAMPLES / "gpt_shakespeare.nn", hyperparams={"L": 3, "D": 48, "heads": 4})
    table = rows(c.graph)
    names = [r[0] for r in table]
    assert [n for n in names if n.startswith("blocks.")] == ["blocks.0", "blocks.1", "blocks.2"]
    kinds = {r[0]: r[1] for r in table}
    assert kinds["blocks.1"] == "Block" and kinds["wte"] == "embedding" and kinds["lm_head"] == "linear"
    total = sum(p.numel() for p in c.module.parameters())
    assert sum(r[3] for r in table) == total
    # one block: ln_1, qkv, proj, ln_2, fc, proj with D = 48
    D = 48
    per_block = 2 * D + (3 * D * D + 3 * D) + (D * D + D) + 2 * D + (4 * D * D + 4 * D) + (4 * D * D + D)
    assert dict((r[0], r[3]) for r in table)["blocks.2"] == per_block
    text = summarize(c.graph)
    assert re.search(r"blocks\.0\s+Block\s+f32\[B, T, 48\]", text), text
    assert f"Total params: {total:,}" in text
