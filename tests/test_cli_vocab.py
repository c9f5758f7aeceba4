"""`tip-decode vocab` on real tokenizers, through the installed console script's click group."""

import json

from click.testing import CliRunner

from tip_decode.cli import main


def test_vocab_json_lists_hits_multi_token_entries_and_markers(tokenizers_dir):
    result = CliRunner().invoke(main, ["vocab", str(tokenizers_dir / "qwen3"), "--triggers", "alternatively,hmm", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    by_id = {(e["id"], e["kind"]): e for e in data["entries"]}
    assert by_id[(38478, "single")]["trigger"] == "alternatively"
    assert by_id[(38478, "single")]["text"] == " Alternatively"
    assert by_id[(92014, "single")]["piece"] == "Alternatively"
    atively = by_id[(7887, "multi")]
    assert atively["waits_for"] == [{"id": 40412, "text": "altern"}]
    assert data["think_markers"]["start"] == {"id": 151667, "text": "<think>"}
    assert data["think_markers"]["auto_scope"] == "think"


def test_vocab_table_for_people(tokenizers_dir):
    result = CliRunner().invoke(main, ["vocab", str(tokenizers_dir / "llama-3.1"), "--triggers", "paper"])
    assert result.exit_code == 0, result.output
    assert "' Alternatively'" in result.output and "waits for prefix" in result.output
    header = result.output.splitlines()[0].split()
    assert header[:3] == ["id", "piece", "text"]  # the column matches the JSON key "text"
    assert "think markers: none found; scope 'auto' means 'all'" in result.output


def test_vocab_tokenizer_json_file_and_presets(tokenizers_dir):
    result = CliRunner().invoke(main, ["vocab", str(tokenizers_dir / "qwen2.5" / "tokenizer.json"), "--triggers", "reflection", "--json"])
    assert result.exit_code == 0, result.output
    triggers = json.loads(result.output)["triggers"]
    assert "wait" in triggers and "hmm" in triggers


def test_vocab_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(main, ["vocab", str(tmp_path / "nowhere")])
    assert result.exit_code == 2  # a usage error: the path does not exist
    assert "no such folder" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["vocab", str(tmp_path)])  # a folder without tokenizer files
    assert result.exit_code == 1 and "cannot load tokenizer" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["vocab", str(tmp_path), "--triggers", ","])
    assert result.exit_code != 0 and "--triggers" in result.output and "Traceback" not in result.output
