"""`tip-decode vocab`: show the switch vocabulary of a tokenizer."""

from __future__ import annotations

import json

import click

from tip_decode.cli.common import force_triggers_option, load_tokenizer, triggers_option, vet_triggers


@click.command()
@click.argument("tokenizer")
@triggers_option
@force_triggers_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def vocab(tokenizer: str, triggers: tuple[str, ...], force_triggers: bool, as_json: bool) -> None:
    """Print the switch vocabulary of TOKENIZER (a local folder or a Hub id) for a trigger list.

    A trigger word that looks wrong (close to a preset's name, shorter than a word, or spelled by no
    whole token of the tokenizer) is refused unless --force-triggers.
    """
    from tip_decode.core.vocabulary import SwitchVocabulary

    vet_triggers(triggers, None, force_triggers)  # before the tokenizer loads
    tok = load_tokenizer(tokenizer)
    vet_triggers(triggers, tok, force_triggers, spelling=False)
    try:
        switch_vocab = SwitchVocabulary.from_tokenizer(tok, triggers)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    rows = []
    for token_id in switch_vocab.token_ids:
        rows.append(
            {
                "id": token_id,
                "piece": _piece(tok, token_id),
                "text": switch_vocab.token_text[token_id],
                "trigger": switch_vocab.hit_trigger[token_id],
                "kind": "single",
                "waits_for": [],
            }
        )
    for m in switch_vocab.multi_token:
        rows.append(
            {
                "id": m.completion,
                "piece": _piece(tok, m.completion),
                "text": switch_vocab.token_text[m.completion],
                "trigger": m.trigger,
                "kind": "multi",
                "waits_for": [{"id": i, "text": switch_vocab.token_text[i]} for i in m.prefix],
            }
        )
    think = switch_vocab.think
    markers = {
        "start": None if think.start_id is None else {"id": think.start_id, "text": think.start_text},
        "end": None if think.end_id is None else {"id": think.end_id, "text": think.end_text},
        "auto_scope": switch_vocab.default_scope(),
    }
    if as_json:
        click.echo(json.dumps({"tokenizer": tokenizer, "triggers": list(switch_vocab.triggers), "entries": rows, "think_markers": markers}, ensure_ascii=False))
        return
    from tabulate import tabulate

    table = [[r["id"], repr(r["piece"]), repr(r["text"]), r["trigger"], r["kind"], " ".join(f"{w['id']}:{w['text']!r}" for w in r["waits_for"])] for r in rows]
    click.echo(tabulate(table, headers=["id", "piece", "text", "trigger", "kind", "waits for prefix"]))
    click.echo()
    if think.available:
        click.echo(f"think markers: {think.start_text!r} = {think.start_id}, {think.end_text!r} = {think.end_id}; scope 'auto' means 'think'")
    else:
        click.echo("think markers: none found; scope 'auto' means 'all' (the whole response)")


def _piece(tokenizer, token_id: int) -> str:
    from tip_decode.core.vocabulary import TokenizerView

    return TokenizerView(tokenizer).piece(token_id)
