"""Compare standard decoding with TIP on your own problems, from Python.

    python examples/harness_compare.py MODEL_DIR OUT_DIR

Builds three problems in code, runs baseline and TIP (alpha 3, beta 600) through the `hf` backend
with two samples each, and prints the comparison table. Rerunning with the same OUT_DIR resumes.
"""

from __future__ import annotations

import sys

from tip_decode.harness import HFBackend, Problem, SamplingSettings, format_table, parse_config_spec, run_compare


def main(model: str, out_dir: str, max_new_tokens: int = 64) -> dict:
    problems = [
        Problem(id="add", question="What is 17 + 25?", answer="42", answer_kind="number"),
        Problem(id="frac", question="Simplify 6/8.", answer="\\frac{3}{4}"),
        Problem(id="pick", question="Which is a prime number?", answer="C", answer_kind="choice", choices=("4", "9", "7", "15")),
    ]
    configs = [parse_config_spec("baseline"), parse_config_spec("tip:alpha=3,beta=600")]
    backend = HFBackend(model, sampling=SamplingSettings(temperature=0.7, top_p=0.95, max_new_tokens=max_new_tokens))
    summary = run_compare(problems, configs, backend, out_dir, samples=2, seed=0)
    print(format_table(summary))
    return summary


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
