"""Analyse one short reasoning trace: thoughts, switches, flags and the underthinking score.

Run: python examples/analysis_trace.py [TOKENIZER_DIR]   (default: ../shared/tokenizers/qwen3)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tokenizers import Tokenizer

from tip_decode import SwitchVocabulary
from tip_decode.analysis import aggregate, analyze_response

ROOT = Path(__file__).resolve().parents[1]
default = Path(os.environ.get("TIP_DECODE_TOKENIZERS", ROOT.parent / "shared" / "tokenizers")) / "qwen3"
tokenizer_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else default
tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, ["alternatively", "wait"])

# The chat template opened <think>, so the response starts inside the reasoning block.
response = (
    "We need 2x where x = 3. So 2x = 6, and the answer is 6.\n\n"
    "Wait, maybe x means something else.\n\n"
    "Alternatively, read it as x + 1 = 4, so 2x = 8.</think>\n\n"
    "The answer is \\boxed{8}."
)
analysis = analyze_response(
    response,
    vocabulary=vocabulary,
    tokenizer=tokenizer,
    reference="6",
    prompt_open=True,
    premature_threshold=12,
    id="demo",
)
for thought in analysis.thoughts:
    print(
        f"thought {thought.index}: tokens [{thought.start}, {thought.end}) len {thought.n_tokens:3d} "
        f"opened by {thought.trigger!s:14} candidates {list(thought.candidates)!s:8} {thought.status}"
    )
for switch in analysis.switches:
    flags = [name for name, on in (("premature", switch.premature), ("abandoned on track", switch.on_track)) if on]
    print(f"switch at {switch.position} ({switch.trigger}): ends a {switch.abandoned_length}-token thought {flags}")
print(f"n_tokens {analysis.n_tokens}, correct {analysis.correct}, first correct thought {analysis.first_correct_thought}")
print(f"UT = 1 - {analysis.t_hat}/{analysis.n_tokens} = {analysis.ut:.4f}")
print("aggregate:", {k: v for k, v in aggregate([analysis]).items() if k in ("switches_per_response", "ut", "weighted_ut")})
