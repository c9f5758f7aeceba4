"""`tip-decode analyze FILE.jsonl`: thoughts, switches and the underthinking score of saved responses."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from tip_decode.cli.common import load_tokenizer, triggers_option
from tip_decode.core.config import SCOPES

#: Record fields tried, in order, as the problem key of weighted UT when --group-field is not given.
GROUP_FIELDS = ("problem_id", "unique_id", "problem", "question")


def _read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    records: list[tuple[int, dict[str, Any]]] = []
    try:
        handle = path.open(encoding="utf-8")
    except OSError as err:
        raise click.ClickException(f"cannot read {path}: {err.strerror}") from None
    with handle:
        try:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as err:
                    raise click.ClickException(f"{path} line {number}: not valid JSON ({err.msg}); expected one JSON object per line") from None
                if not isinstance(record, dict):
                    raise click.ClickException(f"{path} line {number}: expected a JSON object, got {type(record).__name__}")
                records.append((number, record))
        except UnicodeDecodeError:
            raise click.ClickException(f"{path}: not a UTF-8 text file; expected JSON lines") from None
    if not records:
        raise click.ClickException(f"{path}: no responses (the file is empty)")
    return records


def _field(path: Path, number: int, record: dict[str, Any], name: str) -> Any:
    if name not in record:
        fields = ", ".join(sorted(record)) or "none"
        raise click.ClickException(f"{path} line {number}: missing field {name!r} (fields: {fields})")
    return record[name]


def _validated(
    path: Path,
    number: int,
    record: dict[str, Any],
    response_field: str,
    answer_field: str,
    id_field: str,
    problem_field: str,
    group_field: str | None,
    ids_field: str = "token_ids",
) -> dict[str, Any]:
    ids = record.get(ids_field) if ids_field else None
    if isinstance(ids, list) and ids and all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        response: Any = ids  # exact generated ids (the harness writes them): no re-tokenising
    else:
        response = _field(path, number, record, response_field)
    if answer_field == "answer" and "answer" not in record and "reference" in record:
        answer_field = "reference"  # the comparison harness's record field
    reference = _field(path, number, record, answer_field)
    is_ids = isinstance(response, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in response)
    if not is_ids and not isinstance(response, str):
        raise click.ClickException(f"{path} line {number}: field {response_field!r} has to be text or a list of token ids, not {type(response).__name__}")
    if not response or (isinstance(response, str) and not response.strip()):
        raise click.ClickException(f"{path} line {number}: empty response in field {response_field!r}")
    if isinstance(reference, (int, float)) and not isinstance(reference, bool):
        reference = str(reference)
    if not isinstance(reference, str) or not reference.strip():
        raise click.ClickException(f"{path} line {number}: field {answer_field!r} has to be a non-empty reference answer, not {reference!r}")
    rid = record.get(id_field, number)
    if group_field is not None:
        group = _field(path, number, record, group_field)
    else:
        group = next((record[f] for f in GROUP_FIELDS if f in record), rid)
    return {
        "line": number,
        "response": response,
        "reference": reference,
        # A grade already in the file (e.g. from the harness) is kept rather than redone.
        "correct": record.get("correct") if isinstance(record.get("correct"), bool) else None,
        "prompt_open": record.get("prompt_open") if isinstance(record.get("prompt_open"), bool) else None,
        "answer_kind": record.get("answer_kind") if record.get("answer_kind") in ("math", "number", "choice") else None,
        "problem": record.get(problem_field) if isinstance(record.get(problem_field), str) else None,
        "id": rid,
        "group": json.dumps(group, sort_keys=True) if isinstance(group, (dict, list)) else group,
    }


@click.command("analyze")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tokenizer", "tokenizer_name", required=True, help="Tokenizer of the model that wrote the responses (folder, tokenizer.json or Hub id); switches are recognised on its token ids.")
@triggers_option
@click.option("--scope", type=click.Choice(SCOPES), default="auto", show_default=True, help="Where thoughts are looked for (as for the penalty).")
@click.option("--prompt-open", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True, help="Responses start inside an open think block ('auto': when a response closes a block it never opened).")
@click.option("--premature-threshold", type=click.IntRange(min=0), default=600, show_default=True, help="A switch is premature when the thought it ends is shorter (tokens).")
@click.option("--kind", "answer_kind", type=click.Choice(["math", "number", "choice"]), default=None, help="Answer kind for grading (default: a record's answer_kind field, else math).")
@click.option("--response-field", default="response", show_default=True, help="Field holding the response text (or its token ids).")
@click.option("--answer-field", default="answer", show_default=True, help="Field holding the reference answer ('reference', as the harness writes, is used when 'answer' is absent).")
@click.option("--ids-field", default="token_ids", show_default=True, help="Field holding generated token ids; used instead of the text when present (as the harness writes).")
@click.option("--id-field", default="id", show_default=True, help="Field holding the response id (optional; the line number otherwise).")
@click.option("--problem-field", default="problem", show_default=True, help="Field holding the problem text (for the LLM judge; optional).")
@click.option("--group-field", default=None, help=f"Field grouping samples of one problem for weighted UT (default: the first of {', '.join(GROUP_FIELDS)} present, else the id).")
@click.option("--judge", "judge_name", type=click.Choice(["answer", "llm"]), default="answer", show_default=True, help="How a thought is judged correct: its candidate answers graded against the reference, or an LLM judge.")
@click.option("--judge-model", default=None, help="Model name for --judge llm.")
@click.option("--judge-base-url", default="http://127.0.0.1:8000/v1", show_default=True, help="OpenAI-compatible endpoint for --judge llm.")
@click.option("--judge-api-key", envvar="TIP_JUDGE_API_KEY", default="EMPTY", show_default=True, help="API key for --judge llm (env TIP_JUDGE_API_KEY).")
@click.option("--judge-cache", type=click.Path(dir_okay=False, path_type=Path), default=None, help="JSON-lines cache of judge replies (default: FILE.judge-cache.jsonl).")
@click.option("--judge-retries", type=click.IntRange(min=0), default=2, show_default=True, help="Retries per thought for --judge llm.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the output contract) instead of tables.")
@click.option("--thoughts", "with_thoughts", is_flag=True, help="With --json: include every thought (span, text, candidates, verdict).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write a plot of thought-length distributions to this file (PNG, PDF or SVG).")
def analyze(
    file: Path,
    tokenizer_name: str,
    triggers: tuple[str, ...],
    scope: str,
    prompt_open: str,
    premature_threshold: int,
    answer_kind: str | None,
    response_field: str,
    answer_field: str,
    ids_field: str,
    id_field: str,
    problem_field: str,
    group_field: str | None,
    judge_name: str,
    judge_model: str | None,
    judge_base_url: str,
    judge_api_key: str,
    judge_cache: Path | None,
    judge_retries: int,
    as_json: bool,
    with_thoughts: bool,
    plot: Path | None,
) -> None:
    """Segment saved responses (JSON lines) into thoughts and report switches and underthinking.

    Each line is a JSON object with the response (text, or generated token ids) and the reference
    answer. Prints per-response and aggregate metrics: thoughts, switches per response, mean tokens
    between switches, premature switches, abandoned-on-track thoughts, UT and weighted UT.
    """
    from tqdm import tqdm

    from tip_decode.analysis import AnswerMatchJudge, LLMJudge, aggregate, analyze_response
    from tip_decode.core.vocabulary import SwitchVocabulary

    records = _read_records(file)
    # Check every line before the (slow) tokenizer load, so bad input fails at once.
    items = [
        _validated(file, number, record, response_field, answer_field, id_field, problem_field, group_field, ids_field)
        for number, record in records
    ]
    tokenizer = load_tokenizer(tokenizer_name)
    try:
        vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, triggers)
        vocabulary.resolve_scope(scope)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    if judge_name == "llm":
        if not judge_model:
            raise click.ClickException("--judge llm needs --judge-model (the model name served at --judge-base-url)")
        cache = judge_cache if judge_cache is not None else file.with_name(file.name + ".judge-cache.jsonl")
        judge: Any = LLMJudge(judge_model, base_url=judge_base_url, api_key=judge_api_key, cache_path=cache, max_retries=judge_retries)
    else:
        judge = AnswerMatchJudge()
    opened: bool | str = {"auto": "auto", "yes": True, "no": False}[prompt_open]

    analyses = []
    for item in tqdm(items, desc="analyze", unit="response", file=sys.stderr, disable=None):
        try:
            analysis = analyze_response(
                item["response"],
                vocabulary=vocabulary,
                tokenizer=tokenizer,
                reference=item["reference"],
                answer_kind=answer_kind or item["answer_kind"] or "math",
                correct=item["correct"],
                judge=judge,
                scope=scope,
                # A record's own prompt_open (the harness knows it from the prompt) beats the guess.
                prompt_open=item["prompt_open"] if opened == "auto" and item["prompt_open"] is not None else opened,
                premature_threshold=premature_threshold,
                id=item["id"],
                problem=item["problem"],
            )
        except (TypeError, ValueError) as err:
            raise click.ClickException(f"{file} line {item['line']}: {err}") from None
        analyses.append(analysis)
    groups = [item["group"] for item in items]

    summary = aggregate(analyses, problem_ids=groups)
    no_reasoning = sum(a.reasoning_start is None for a in analyses)
    if no_reasoning:
        click.echo(
            f"warning: {no_reasoning} of {len(analyses)} responses have no reasoning block under scope "
            f"{analyses[0].scope!r} (no think marker opens one), so they have no thoughts; "
            "use --scope all, or --prompt-open yes if the prompt opened the block",
            err=True,
        )
    if as_json:
        out = {"responses": [a.to_dict(thoughts=with_thoughts) for a in analyses], "aggregate": summary}
        click.echo(json.dumps(out, ensure_ascii=False))
    else:
        _print_tables(analyses, summary)
    if plot is not None:
        _plot(analyses, plot, premature_threshold)
        click.echo(f"plot written to {plot}", err=True)


def _fmt(value: Any) -> Any:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return value


def _print_tables(analyses: list, summary: dict[str, Any]) -> None:
    from tabulate import tabulate

    rows = [
        [a.id, a.n_tokens, a.n_thoughts, len(a.switches), a.premature, a.abandoned_on_track, _fmt(a.first_correct_thought), _fmt(a.correct), _fmt(a.ut)]
        for a in analyses
    ]
    headers = ["id", "tokens", "thoughts", "switches", "premature", "on-track abandoned", "first correct", "correct", "UT"]
    click.echo(tabulate(rows, headers=headers))
    click.echo()
    click.echo(tabulate([[k, _fmt(v)] for k, v in summary.items()], headers=["aggregate", "value"]))


def _plot(analyses: list, path: Path, threshold: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {
        "correct responses": [t.n_tokens for a in analyses if a.correct is True for t in a.thoughts],
        "incorrect responses": [t.n_tokens for a in analyses if a.correct is False for t in a.thoughts],
        "ungraded": [t.n_tokens for a in analyses if a.correct is None for t in a.thoughts],
    }
    fig, ax = plt.subplots(figsize=(7, 4))
    everything = [n for v in groups.values() for n in v]
    bins = 30 if not everything else min(40, max(5, len(set(everything))))
    for label, lengths in groups.items():
        if lengths:
            ax.hist(lengths, bins=bins, alpha=0.55, label=f"{label} ({len(lengths)} thoughts)")
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"premature threshold ({threshold})")
    ax.set_xlabel("thought length (tokens)")
    ax.set_ylabel("thoughts")
    ax.set_title("Thought lengths")
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path)
    except (OSError, ValueError) as err:
        raise click.ClickException(f"cannot write plot {path}: {err}") from None
    finally:
        plt.close(fig)
