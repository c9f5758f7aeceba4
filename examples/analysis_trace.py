"""Analyse one short reasoning trace: thoughts, switches, flags and the underthinking score.

    python examples/analysis_trace.py [TOKENIZER]

TOKENIZER is the folder or Hub id of a reasoning model's tokenizer (the trace is English text). The
default is the Qwen3 tokenizer that the repository's tests ship (tests/vendored/), so the example
runs offline from a clone.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tip_decode import SwitchVocabulary
from tip_decode.analysis import aggregate, analyze_response
from tip_decode.harness.backends import load_hf_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def default_tokenizer() -> str:
    """The Qwen3 tokenizer of tests/vendored/ (TIP_DECODE_TOKENIZERS overrides the folder)."""
    if not (ROOT / "tests" / "vendored.py").is_file():
        sys.exit("error: no tokenizer given and no repository checkout around this example: pass one, e.g. Qwen/Qwen3-4B")
    sys.path.insert(0, str(ROOT / "tests"))
    import vendored

    return str(vendored.tokenizers_dir() / "qwen3")


name = sys.argv[1] if len(sys.argv) > 1 else default_tokenizer()
try:
    tokenizer = load_hf_tokenizer(name)
except (RuntimeError, ValueError) as err:
    sys.exit(f"error: {err}")
vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, ["alternatively", "wait"])

# The chat template opened <think>, so the response starts inside the reasoning block.
response = (
    "We need 2x where x = 3. So 2x = 6, and the answer is 6.\n\n"
    "Wait, maybe x means something else.\n\n"
    "Alternatively, read it as x + 1 = 4, so 2x = 8.</think>\n\n"
    "The answer is \\boxed{8}."
)
unknown = tokenizer.unk_token_id
ids = tokenizer(response, add_special_tokens=False)["input_ids"]
if unknown is not None and unknown in ids:
    # A tokenizer built for other text (the demo model's) reads these words as "unknown": no thought
    # could state an answer, and every number below would describe that, not the trace.
    sys.exit(
        f"error: tokenizer {name!r} does not know {ids.count(unknown)} of the trace's {len(ids)} tokens (they read as "
        f"{tokenizer.unk_token!r}); give a reasoning model's tokenizer, e.g. Qwen/Qwen3-4B"
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
if analysis.ut is None:
    print("UT unknown: a thought before the first correct one could not be judged")
elif analysis.t_hat is None:
    print(f"UT = {analysis.ut:.4f}: no thought was judged correct, so nothing promising was abandoned")
else:
    print(f"UT = 1 - {analysis.t_hat}/{analysis.n_tokens} = {analysis.ut:.4f}")
print("aggregate:", {k: v for k, v in aggregate([analysis]).items() if k in ("switches_per_response", "ut", "weighted_ut")})
