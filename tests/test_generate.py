"""Generation: parity with transformers' `generate` on the same exported weights (greedy
tokens, KV-cache logits), sampling and seeds, stop strings across token boundaries, n samples,
infilling laid out as training's FIM, context limits, `load_backend`, and the OpenAI backend
against a local server (concurrency, retries, a down and a garbage endpoint)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import GOOD_PY, OTHER_PY, small_bpe

from codekiln.errors import UserError
from codekiln.generate import (
    CodekilnBackend,
    Completion,
    OpenAIBackend,
    SamplingParams,
    TransformersBackend,
    load_backend,
)
from codekiln.generate.text import StopMatcher
from codekiln.model import CodeGPT, ModelConfig, export_hf
from codekiln.model.gpt import KVCache
from codekiln.pack.fim import FimIds, fim_cut_points, fim_tokens
from codekiln.tokenizer.special import EOS, SPECIAL_TOKENS

VOCAB = 400
TINY = {"vocab_size": VOCAB, "n_positions": 96, "n_embd": 64, "n_layer": 2, "n_head": 4}
PROMPT = "def add(a, b):\n    return"
GREEDY = SamplingParams(greedy=True, max_new_tokens=24)


@torch.no_grad()
def random_model(config: ModelConfig, seed: int = 0) -> CodeGPT:
    """Random weights with noise on every parameter, so greedy text varies from step to step."""
    torch.manual_seed(seed)
    model = CodeGPT(config)
    gen = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        param.add_(torch.randn(param.shape, generator=gen) * 0.1)
    return model.eval()


def write_tokenizer(folder: Path, special_tokens=SPECIAL_TOKENS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = small_bpe([GOOD_PY, OTHER_PY] * 20, special_tokens, vocab_size=VOCAB)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS, "bos_token": EOS}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def export(folder: Path, tokenizer_dir: Path, seed: int = 0, **overrides) -> Path:
    model = random_model(ModelConfig(**{**TINY, **overrides}), seed)
    return export_hf(model, folder, tokenizer_dir=tokenizer_dir)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generate")
    tokenizer = write_tokenizer(root / "tokenizer")
    return {
        "tokenizer": tokenizer,
        # A seed whose greedy text does not repeat one token: the stop tests need variety.
        "bigcode": export(root / "bigcode", tokenizer, seed=3),
        "starcoder2": export(
            root / "starcoder2", tokenizer, seed=1, position="rotary", n_kv_heads=2
        ),
    }


@pytest.fixture(scope="module")
def ours(folders) -> CodekilnBackend:
    return load_backend(folders["bigcode"])


@pytest.fixture(scope="module")
def theirs(folders) -> TransformersBackend:
    pytest.importorskip("transformers")
    return load_backend(folders["bigcode"], engine="transformers")


# Parity with transformers on the same exported folder.


@pytest.mark.parametrize("kind", ["bigcode", "starcoder2"])
def test_greedy_tokens_equal_transformers_generate(folders, kind):
    transformers = pytest.importorskip("transformers")
    backend = load_backend(folders[kind])
    assert isinstance(backend, CodekilnBackend)
    [[ours_greedy]] = backend.complete([PROMPT], GREEDY)
    assert ours_greedy.tokens > 5

    model = transformers.AutoModelForCausalLM.from_pretrained(folders[kind]).eval()
    prompt = torch.tensor([backend.prompt_ids(PROMPT)])
    with torch.no_grad():
        out = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=False,
            max_new_tokens=GREEDY.max_new_tokens,
            max_length=None,
        )
    generated = out[0, prompt.shape[1] :].tolist()
    eos = backend.tokenizer.token_to_id(EOS)
    assert list(ours_greedy.token_ids) == [t for t in generated if t != eos][: ours_greedy.tokens]
    assert ours_greedy.finish_reason == ("eos" if eos in generated else "length")

    [[via_backend]] = load_backend(folders[kind], engine="transformers").complete([PROMPT], GREEDY)
    assert via_backend.token_ids == ours_greedy.token_ids
    assert via_backend.text == ours_greedy.text
    assert via_backend.finish_reason == ours_greedy.finish_reason


@pytest.mark.parametrize(
    "overrides", [{}, {"position": "rotary", "n_kv_heads": 2}], ids=["mqa", "rotary-gqa"]
)
def test_kv_cache_decoding_logits_equal_full_recompute(overrides):
    model = random_model(ModelConfig(**{**TINY, **overrides}))
    ids = torch.randint(0, VOCAB, (1, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(ids)[0]  # (1, 20, V)
        cache = KVCache(model.config.n_layer, capacity=20)
        steps = [model(ids[:, :12], kv_cache=cache)[0]]
        for t in range(12, 20):
            steps.append(model(ids[:, t : t + 1], kv_cache=cache)[0])
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)

    # Three rows from one prefill, then a row dropped: the kept rows decode as alone.
    rows = torch.randint(0, VOCAB, (3, 4), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        cache = KVCache(model.config.n_layer, capacity=20)
        model(ids[:, :12], kv_cache=cache)
        cache.expand(3)
        model(rows[:, :2], kv_cache=cache)
        cache.keep(torch.tensor([2, 0]))
        last = model(rows[[2, 0], 2:], kv_cache=cache)[0]
        alone = model(torch.cat([ids[:, :12].expand(2, -1), rows[[2, 0]]], dim=1))[0]
    assert torch.allclose(last, alone[:, 14:], atol=1e-5)


def test_prefill_keeps_only_last_position_logits(ours):
    """The prefill computes one row of logits: the full forward's last."""
    ids = ours.prompt_ids(PROMPT)
    cache = KVCache(ours.model.config.n_layer, capacity=len(ids))
    with torch.inference_mode():
        last = ours._prefill(ids, cache)
        full = ours.model(torch.tensor([ids]))[0]
    assert last.shape == (1, VOCAB) and full.shape == (1, len(ids), VOCAB)
    assert torch.allclose(last, full[:, -1], atol=1e-5)


# Sampling.


def test_seeds_reproduce_and_differ(ours, theirs):
    params = SamplingParams(temperature=1.0, top_p=1.0, n=3, max_new_tokens=12, seed=7)
    first = ours.complete([PROMPT, "import os\n"], params)
    assert first == ours.complete([PROMPT, "import os\n"], params)
    other = ours.complete([PROMPT, "import os\n"], SamplingParams(**{**vars(params), "seed": 8}))
    assert [c.token_ids for c in first[0]] != [c.token_ids for c in other[0]]
    assert len({c.token_ids for c in first[0]}) > 1  # the n samples differ from each other
    # transformers' backend reproduces its own samples too.
    assert theirs.complete([PROMPT], params) == theirs.complete([PROMPT], params)


def test_top_k_1_equals_greedy(ours):
    top1 = SamplingParams(temperature=1.5, top_k=1, max_new_tokens=GREEDY.max_new_tokens)
    assert ours.complete([PROMPT], top1) == ours.complete([PROMPT], GREEDY)


def test_n_samples_per_prompt_stay_in_the_top_k(ours):
    """Every sampled token is among the 2 most likely of a full forward over its prefix, also
    after samples finished early and left the batch (the eos and stop checks drop rows)."""
    params = SamplingParams(
        temperature=2.0, top_k=2, n=6, max_new_tokens=16, stop=("a", "e", "t", "s")
    )
    results = ours.complete([PROMPT, "class Counter:"], params)
    assert [len(samples) for samples in results] == [6, 6]
    reasons = {c.finish_reason for samples in results for c in samples}
    assert "stop" in reasons or "eos" in reasons  # some rows did leave the batch
    for prompt, samples in zip([PROMPT, "class Counter:"], results, strict=True):
        for sample in samples:
            ids = ours.prompt_ids(prompt) + list(sample.token_ids)
            with torch.no_grad():
                logits = ours.model(torch.tensor([ids]))[0][0]
            plen = len(ours.prompt_ids(prompt))
            for step, token in enumerate(sample.token_ids):
                top2 = logits[plen - 1 + step].topk(2).indices.tolist()
                assert token in top2


def test_sampling_params_say_how_to_fix():
    for kwargs, message in [
        ({"temperature": -1}, "temperature must be 0"),
        ({"top_p": 0}, "top_p must be in"),
        ({"top_k": -1}, "top_k must be a non-negative"),
        ({"n": 0}, "n must be a positive"),
        ({"max_new_tokens": 0}, "max_new_tokens must be a positive"),
        ({"stop": "\n"}, r"write stop=\["),
        ({"stop": [""]}, "non-empty string"),
    ]:
        with pytest.raises(ValueError, match=message):
            SamplingParams(**kwargs)
    assert SamplingParams(stop=["x"]).stop == ("x",)


# Stop strings.


def test_stop_matcher_holds_back_a_possible_stop_and_releases_it_when_it_is_not():
    matcher = StopMatcher(["\ndef", "\n#"])
    assert matcher.feed("x = 1\n") == ("x = 1", False)
    assert matcher.feed("d") == ("", False)
    assert matcher.feed("o") == ("\ndo", False)  # "\ndo" cannot become "\ndef"
    assert matcher.feed("\n#") == ("", True)
    assert matcher.text == "x = 1\ndo"
    matcher = StopMatcher(["\ndef"])
    assert matcher.feed("y\nde") == ("y", False)
    assert matcher.flush() == "\nde"  # the text ended without the stop string


def test_stop_string_across_a_token_boundary_cuts_the_text(ours, theirs):
    [[plain]] = ours.complete([PROMPT], GREEDY)
    ids = list(plain.token_ids)

    def spanning_stop(i: int) -> str | None:
        """Two characters either side of the boundary after token i, if they first occur
        there (so the stop string is in neither token alone)."""
        boundary = len(ours.tokenizer.decode(ids[: i + 1]))
        stop = plain.text[boundary - 1 : boundary + 1]
        clean = len(stop) == 2 and "\ufffd" not in stop
        return stop if clean and plain.text.find(stop) == boundary - 1 else None

    i, stop = next((i, s) for i in range(1, len(ids) - 1) if (s := spanning_stop(i)))
    expected = plain.text[: plain.text.index(stop)]
    params = SamplingParams(greedy=True, max_new_tokens=GREEDY.max_new_tokens, stop=(stop,))
    for backend in (ours, theirs):
        [[cut]] = backend.complete([PROMPT], params)
        assert (cut.text, cut.finish_reason) == (expected, "stop"), backend.name
    [[cut]] = ours.complete([PROMPT], params)
    assert cut.tokens == i + 2  # it stopped at the token that completed the stop string

    for backend in (ours, theirs):
        stream = backend.stream(PROMPT, params)
        deltas = list(stream)
        # Nothing was emitted that the stop string later took back.
        assert "".join(deltas) == expected, backend.name
        assert stream.completion.text == expected
        assert stream.completion.finish_reason == "stop"


def test_stream_equals_complete_and_can_be_closed(ours):
    stream = ours.stream(PROMPT, GREEDY)
    deltas = list(stream)
    [[whole]] = ours.complete([PROMPT], GREEDY)
    assert "".join(deltas) == whole.text and stream.completion == whole
    assert len(deltas) > 1
    early = ours.stream(PROMPT, GREEDY)
    next(early)
    early.close()
    assert list(early) == [] and early.completion is None
    with pytest.raises(ValueError, match="stream gives one sample"):
        ours.stream(PROMPT, SamplingParams(n=2))


# Infilling.


def test_infill_prompt_is_training_psm_layout(ours, folders):
    """The infill prompt is exactly the head of what training's FIM makes of the same text
    cut at the same points: <fim_prefix> prefix <fim_suffix> suffix <fim_middle>."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folders["tokenizer"] / "tokenizer.json"))
    text = GOOD_PY
    fragment = tokenizer.encode(text).ids
    ids = FimIds.from_tokenizer(tokenizer)
    for seed in range(5):
        lo, hi = fim_cut_points(len(text), np.random.default_rng(seed))
        trained = fim_tokens(fragment, tokenizer, ids, np.random.default_rng(seed), spm_rate=0)
        head = trained[: trained.tolist().index(ids.middle) + 1].tolist()
        assert ours.prompt_ids(text[:lo], text[hi:]) == head
        middle = trained[len(head) :].tolist()
        assert tokenizer.decode(middle) == text[lo:hi]

    spm = CodekilnBackend(ours.model, ours.tokenizer, fim_order="spm")
    lo, hi = fim_cut_points(len(text), np.random.default_rng(0))
    trained = fim_tokens(fragment, tokenizer, ids, np.random.default_rng(0), spm_rate=1)
    prompt = spm.prompt_ids(text[:lo], text[hi:])
    assert trained.tolist()[: len(prompt)] == prompt


def test_infill_generates_the_middle_on_every_backend(ours, theirs):
    params = SamplingParams(greedy=True, max_new_tokens=10)
    [[middle]] = ours.infill(["def add(a, b):\n    return "], ["\n"], params)
    assert middle.prompt_tokens == len(ours.prompt_ids("def add(a, b):\n    return ", "\n"))
    [[again]] = theirs.infill(["def add(a, b):\n    return "], ["\n"], params)
    assert again.token_ids == middle.token_ids
    assert ours.supports_fim and theirs.supports_fim
    streamed = ours.stream("def add(a, b):\n    return ", params, suffix="\n")
    assert "".join(streamed) == middle.text


def test_infill_without_fim_tokens_is_a_user_error(tmp_path):
    tokenizer = write_tokenizer(tmp_path / "tokenizer", special_tokens=[EOS])
    folder = export(tmp_path / "plain", tokenizer)
    for engine in ("codekiln", "transformers"):
        if engine == "transformers":
            pytest.importorskip("transformers")
        backend = load_backend(folder, engine=engine)
        assert not backend.supports_fim
        with pytest.raises(UserError, match="cannot fill in the middle: its tokenizer has no"):
            backend.infill(["def f():"], ["\n"], GREEDY)
        assert backend.complete(["def"], SamplingParams(greedy=True, max_new_tokens=2))


# Context and bad input.


def test_the_context_bounds_the_completion_and_refuses_overlong_prompts(ours):
    ids = ours.prompt_ids(GOOD_PY)
    room = TINY["n_positions"] - len(ids)
    assert 0 < room < 30
    params = SamplingParams(greedy=True, max_new_tokens=200, ignore_eos=True)
    [[sample]] = ours.complete([GOOD_PY], params)
    assert (sample.tokens, sample.finish_reason) == (room, "length")
    with pytest.raises(UserError, match="shorten the prompt"):
        ours.complete([GOOD_PY * 2], params)
    with pytest.raises(UserError, match="shorten the prompt"):
        ours.stream(GOOD_PY * 2, params)


def test_ignore_eos_and_empty_prompt(ours):
    params = SamplingParams(greedy=True, max_new_tokens=30, ignore_eos=True)
    [[sample]] = ours.complete([""], params)
    assert sample.prompt_tokens == 1 and sample.tokens == 30
    assert ours.prompt_ids("") == [ours.tokenizer.token_to_id(EOS)]


def test_load_backend_picks_the_engine(folders, tmp_path):
    assert isinstance(load_backend(folders["bigcode"]), CodekilnBackend)
    assert isinstance(load_backend(folders["starcoder2"]), CodekilnBackend)
    with pytest.raises(UserError, match="model folder .*nowhere does not exist"):
        load_backend(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        load_backend(tmp_path / "empty")
    with pytest.raises(UserError, match="engine must be one of"):
        load_backend(folders["bigcode"], engine="tgi")
    transformers = pytest.importorskip("transformers")
    assert isinstance(load_backend(folders["bigcode"], engine="transformers"), TransformersBackend)
    # Another architecture goes to transformers.
    gpt2 = tmp_path / "gpt2"
    config = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=VOCAB)
    transformers.GPT2LMHeadModel(config).save_pretrained(gpt2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (gpt2 / name).write_bytes((folders["tokenizer"] / name).read_bytes())
    backend = load_backend(gpt2)
    assert isinstance(backend, TransformersBackend)
    assert backend.context_length == 1024
    [[sample]] = backend.complete([PROMPT], SamplingParams(greedy=True, max_new_tokens=4))
    assert sample.prompt_tokens == len(backend.prompt_ids(PROMPT))


# The OpenAI-compatible backend, against a server on loopback.


class CompletionServer:
    """/v1/completions on loopback, answered by a backend, a fixed reply or a failure, and
    counting how many requests it serves at once."""

    def __init__(self, backend=None, reply: bytes | None = None, fail_first: int = 0) -> None:
        self.backend, self.reply, self.fail_first = backend, reply, fail_first
        self.requests: list[dict] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._send(200, json.dumps({"data": [{"id": "kiln", "max_model_len": 96}]}))

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    failing = len(server.requests) <= server.fail_first
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                try:
                    time.sleep(0.05)
                    if failing:
                        self._send(503, '{"error": {"message": "warming up"}}')
                    elif server.reply is not None:
                        self._send(200, server.reply)
                    elif body.get("stream"):
                        self._stream(body)
                    else:
                        self._send(200, json.dumps(server.answer(body)))
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _send(self, status: int, text: str | bytes) -> None:
                data = text.encode() if isinstance(text, str) else text
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                stream = server.backend.stream(
                    body["prompt"], server.params(body), body.get("suffix")
                )
                for delta in stream:
                    event = {"choices": [{"text": delta, "index": 0, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                end = {"choices": [{"text": "", "index": 0, "finish_reason": "stop"}]}
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def params(self, body: dict) -> SamplingParams:
        return SamplingParams(
            max_new_tokens=body["max_tokens"],
            temperature=body["temperature"],
            top_p=body["top_p"],
            seed=body["seed"],
            stop=tuple(body.get("stop", ())),
        )

    def answer(self, body: dict) -> dict:
        params = self.params(body)
        if "suffix" in body:
            [[c]] = self.backend.infill([body["prompt"]], [body["suffix"]], params)
        else:
            [[c]] = self.backend.complete([body["prompt"]], params)
        reason = "length" if c.finish_reason == "length" else "stop"
        return {
            "choices": [{"text": c.text, "index": 0, "finish_reason": reason}],
            "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.tokens},
        }

    def __enter__(self) -> CompletionServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_backend_matches_the_model_it_serves(ours):
    with CompletionServer(ours) as server:
        backend = load_backend(server.url + "/v1", concurrency=4)
        assert isinstance(backend, OpenAIBackend)
        assert (backend.model, backend.context_length) == ("kiln", 96)
        params = SamplingParams(greedy=True, max_new_tokens=12, n=2)
        remote = backend.complete([PROMPT, "import os\n"], params)
        local = ours.complete([PROMPT, "import os\n"], params)
        for r_samples, l_samples in zip(remote, local, strict=True):
            for r, c in zip(r_samples, l_samples, strict=True):
                assert (r.text, r.tokens, r.prompt_tokens) == (c.text, c.tokens, c.prompt_tokens)
        assert server.most_in_flight >= 2  # the four requests overlapped
        assert all(body["model"] == "kiln" and body["n"] == 1 for body in server.requests)
        assert len({body["seed"] for body in server.requests}) == 4  # one seed per sample

        [[middle]] = backend.infill(
            ["def f(x):\n    return "], ["\n"], params.__class__(greedy=True, max_new_tokens=6)
        )
        [[expected]] = ours.infill(
            ["def f(x):\n    return "], ["\n"], SamplingParams(greedy=True, max_new_tokens=6)
        )
        assert middle.text == expected.text and server.requests[-1]["suffix"] == "\n"

        stream = backend.stream(PROMPT, SamplingParams(greedy=True, max_new_tokens=12))
        assert "".join(stream) == local[0][0].text
        assert stream.completion.text == local[0][0].text


def test_openai_backend_retries_then_succeeds():
    reply = json.dumps({"choices": [{"text": "x\ndef g", "finish_reason": "length"}]})
    with CompletionServer(reply=reply.encode(), fail_first=2) as server:
        backend = OpenAIBackend(server.url, model="m", backoff=0.01, retries=2)
        [[sample]] = backend.complete(["p"], SamplingParams(stop=["\ndef"]))
        assert (sample.text, sample.finish_reason) == ("x", "stop")
        assert len(server.requests) == 3


def test_openai_endpoint_down_or_garbage_is_a_user_error():
    with CompletionServer(reply=b"") as server:
        url = server.url
    # The server is shut down: connections are refused.
    with pytest.raises(UserError, match=r"failed 3 times, the last with: .*refused"):
        OpenAIBackend(url, model="m", retries=2, backoff=0.01).complete(["p"], GREEDY)
    with pytest.raises(UserError, match="failed 2 times, the last with: HTTP 503 warming up"):
        with CompletionServer(reply=b"{}", fail_first=10) as server:
            OpenAIBackend(server.url, model="m", retries=1, backoff=0.01).complete(["p"], GREEDY)
    for garbage, message in [
        (b"<html>hello</html>", "returned something that is not JSON"),
        (b'{"choices": []}', "returned no completion"),
        (b'{"choices": [{"text": 3}]}', "returned no completion"),
    ]:
        with CompletionServer(reply=garbage) as server:
            with pytest.raises(UserError, match=message):
                OpenAIBackend(server.url, model="m", retries=0).complete(["p"], GREEDY)


def test_completion_is_plain_data():
    sample = Completion("x", 1, "eos")
    assert sample.token_ids == () and "token_ids" not in repr(sample)
    with pytest.raises(AssertionError):
        Completion("x", 1, "done")
