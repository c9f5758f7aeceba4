"""The comparison harness: does TIP help a model on a task, and at what cost?

Python API (the `compare`, `grid` and `score` commands are thin wrappers over it):

- `Problem`, `load_problems`, `load_file`, `load_named`, `DATASETS`: what to ask.
- `RunConfig`, `parse_config_spec`: how to decode (baseline, TIP variants).
- `HFBackend`, `VLLMBackend`, `OpenAIBackend`, `SGLangBackend`, `SamplingSettings`: where to generate.
- `run_compare(problems, configs, backend, out_dir, ...) -> summary`: generate, grade, summarise.
- `run_grid(problems, backend, out_dir, alphas=..., betas=...)`: the alpha x beta sweep.
- `summarize(run_dir)`: recompute grades and metrics from saved records (`tip-decode score`).
- `format_table`, `plot_comparison`, `plot_heatmap`: the table and plot writers.

Backends import their engines lazily: importing this package needs neither vLLM nor a model.
"""

from tip_decode.harness.backends import (
    VLLM_PROCESSOR,
    Backend,
    Completion,
    GenerationRequest,
    HFBackend,
    OpenAIBackend,
    SamplingSettings,
    SGLangBackend,
    VLLMBackend,
)
from tip_decode.harness.configs import RunConfig, grid_configs, parse_config_spec
from tip_decode.harness.grid import PAPER_ALPHAS, PAPER_BETAS, grid_summary, run_grid
from tip_decode.harness.problems import DATASETS, Problem, load_file, load_named, load_problems, shuffle_choices
from tip_decode.harness.prompts import DEFAULT_TEMPLATE, chat_prompt_builder, user_message
from tip_decode.harness.records import RecordWriter, iter_records, read_records
from tip_decode.harness.report import format_table, plot_comparison, plot_heatmap, write_summary_md
from tip_decode.harness.run import run_compare, sample_seed, summarize
from tip_decode.harness.stats import mean_interval, paired_bootstrap, pass1_interval, pass_at_k, wilson_interval

__all__ = [
    "DATASETS",
    "DEFAULT_TEMPLATE",
    "PAPER_ALPHAS",
    "PAPER_BETAS",
    "VLLM_PROCESSOR",
    "Backend",
    "Completion",
    "GenerationRequest",
    "HFBackend",
    "OpenAIBackend",
    "Problem",
    "RecordWriter",
    "RunConfig",
    "SamplingSettings",
    "SGLangBackend",
    "VLLMBackend",
    "chat_prompt_builder",
    "format_table",
    "grid_configs",
    "grid_summary",
    "iter_records",
    "load_file",
    "load_named",
    "load_problems",
    "mean_interval",
    "paired_bootstrap",
    "pass1_interval",
    "parse_config_spec",
    "pass_at_k",
    "plot_comparison",
    "plot_heatmap",
    "read_records",
    "run_compare",
    "run_grid",
    "sample_seed",
    "shuffle_choices",
    "summarize",
    "user_message",
    "wilson_interval",
    "write_summary_md",
]
