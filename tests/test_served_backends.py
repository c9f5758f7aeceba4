"""The served backends' failures in the middle of a run are one line each, and results already in
are kept: a request the server rejects (HTTP 400, as vLLM answers a bad `vllm_xargs`), a server that
drops the connection. The server is a real HTTP server on a free port answering what an
OpenAI-compatible server answers in those cases; what is under test is the client side
(`harness.served_backends`), which no real engine test reaches: the harness checks its settings
before it sends them.
"""

from __future__ import annotations

import threading

import pytest
from http_servers import JsonHandler, serving

from tip_decode.demo import MODEL_DIR
from tip_decode.harness.backend_base import GenerationRequest, SamplingSettings, load_hf_tokenizer
from tip_decode.harness.served_backends import OpenAIBackend

MODEL = "demo"


class Server(JsonHandler):
    """Lists one model; answers the first `good` completions, then fails as `failure` says."""

    model = MODEL
    failure = "reject"
    good = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with Server.lock:
            answer = Server.good > 0
            Server.good -= 1
        if answer:
            choice = {"index": 0, "text": " 42", "finish_reason": "stop", "logprobs": None, "token_ids": [7, 8]}
            self.send_json(200, {"id": "c", "object": "text_completion", "created": 0, "model": MODEL, "choices": [choice]})
        elif Server.failure == "reject":
            self.send_json(400, {"error": {"message": "`tip_beta` has to be an integer >= 0, but is -1", "type": "BadRequestError", "code": 400}})
        else:  # drop: close the connection without an answer
            self.close_connection = True
            self.connection.shutdown(2)


@pytest.fixture
def server():
    with serving(Server) as httpd:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"


@pytest.mark.parametrize(
    ("failure", "message"),
    [("reject", "the server rejected a request: "), ("drop", "lost the connection to the server at ")],
)
def test_a_failure_mid_run_is_one_line_and_keeps_what_came_before(server, failure, message, monkeypatch):
    monkeypatch.setattr(Server, "failure", failure)
    monkeypatch.setattr(Server, "good", 2)
    backend = OpenAIBackend(server, tokenizer=load_hf_tokenizer(str(MODEL_DIR)), sampling=SamplingSettings(max_new_tokens=4), concurrency=1)
    backend.client = backend.client.with_options(max_retries=0)  # the drop would otherwise be retried twice, with waits
    requests = [GenerationRequest((str(i), 0, "baseline"), "What is 6 x 7?", (1, 2), seed=i) for i in range(4)]
    finished, tokens = [], []
    with pytest.raises(RuntimeError) as info:
        backend.generate(requests, lambda request, completion: finished.append((request.key, completion.token_ids)), tokens.append)
    said = str(info.value)
    assert said.startswith(message) and "\n" not in said, said
    assert failure != "reject" or "`tip_beta` has to be an integer >= 0" in said, said  # the server's reason, passed on
    assert finished == [(("0", 0, "baseline"), (7, 8)), (("1", 0, "baseline"), (7, 8))]  # reported before the failure
    assert tokens == [2, 2]
