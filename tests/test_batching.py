"""Continuous batching (codekiln.serve.batching) through the Engine: every sequence of a
running batch, whenever it joined and however its prompt was prefilled, gets exactly what
`backend.complete` / `backend.stream` give it alone; admission is first come first served;
n samples share one prefill; a cancelled or failing request leaves the rest running; and
over-long prompts are trimmed on both runners.

The models are tiny and run in float64, so that the batched forward (other matmul shapes,
masked padding keys) cannot flip a near-tie the single-sequence path decides otherwise:
the tests check the scheduling, not float32 rounding.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch
from conftest import GOOD_PY, OTHER_PY, small_bpe

from codekiln.generate import SamplingParams
from codekiln.generate.backend import fit_fim
from codekiln.generate.native import CodekilnBackend
from codekiln.model import CodeGPT, ModelConfig
from codekiln.serve import ServeConfig, batching
from codekiln.serve.api import ApiError, GenerationRequest
from codekiln.serve.batching import BatchRunner
from codekiln.serve.engine import Delta, Engine, Overloaded, ThreadRunner, choice_params
from codekiln.serve.metrics import Metrics
from codekiln.tokenizer.special import SPECIAL_TOKENS

VOCAB = 400
SHAPES = {
    # StarCoder: learned positions, multi-query attention.
    "learned": {"n_positions": 128},
    # StarCoder2: rotary positions, grouped-query attention, a window shorter than prompts.
    "rotary": {"n_positions": 128, "position": "rotary", "n_kv_heads": 2, "sliding_window": 16},
}
TEXT = (GOOD_PY + OTHER_PY) * 3
PROMPTS = [TEXT[:n] for n in (5, 40, 120, 17, 230, 64, 90, 3)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models this small gain nothing from a second thread, and on a shared machine each op
    of a two-thread team can wait a scheduler tick for its partner (100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    return small_bpe([GOOD_PY, OTHER_PY] * 20, SPECIAL_TOKENS, vocab_size=VOCAB)


def make_backend(tokenizer, shape: str, seed: int = 0) -> CodekilnBackend:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, **SHAPES[shape])
    model = CodeGPT(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():  # noise, so greedy text varies from step to step
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return CodekilnBackend(model.double(), tokenizer)


@pytest.fixture(scope="module", params=sorted(SHAPES))
def backend(request, tokenizer):
    return make_backend(tokenizer, request.param)


@pytest.fixture(scope="module")
def learned(tokenizer):
    return make_backend(tokenizer, "learned")


def engine(backend, **config) -> Engine:
    return Engine(backend, ServeConfig(**config), Observed())


class Observed(Metrics):
    """Metrics that also keep every histogram observation, for the tests to read."""

    def __init__(self) -> None:
        super().__init__()
        self.observed: dict[str, list[float]] = {}

    def observe(self, histogram: str, seconds: float) -> None:
        self.observed.setdefault(histogram, []).append(seconds)
        super().observe(histogram, seconds)


def greedy(max_new_tokens: int = 24, **kw) -> SamplingParams:
    return SamplingParams(greedy=True, max_new_tokens=max_new_tokens, **kw)


def request(prompt: str, params: SamplingParams, n: int = 1, **kw) -> GenerationRequest:
    return GenerationRequest((prompt,), params, n=n, **kw)


def test_greedy_batch_equals_complete(backend):
    """Requests of different lengths and budgets, some joining while others decode, with
    prompts prefilled a few tokens per step, decode as each does alone."""
    params = [greedy(10 + 7 * i, stop=("\n\n",) if i % 3 == 0 else ()) for i in range(8)]
    expected = [backend.complete([p], q)[0][0] for p, q in zip(PROMPTS, params, strict=True)]
    served = engine(backend, max_batch=5, prefill_chunk=16)
    first = [served.submit(request(p, q)) for p, q in zip(PROMPTS[:4], params[:4], strict=True)]
    next(first[0].iter_events())  # the batch is decoding: the rest join it
    later = [served.submit(request(p, q)) for p, q in zip(PROMPTS[4:], params[4:], strict=True)]
    for generation, want in zip(first + later, expected, strict=True):
        (sample,) = generation.result()
        assert (sample.text, sample.tokens, sample.finish_reason) == (
            want.text,
            want.tokens,
            want.finish_reason,
        )
        assert sample.prompt_tokens == want.prompt_tokens
    assert served.close(5)


def test_sampling_equals_stream(backend):
    """Each sample of a batch draws with its own generator what the stream path draws."""
    served = engine(backend, max_batch=8)
    cases = [
        (PROMPTS[2], SamplingParams(temperature=0.9, max_new_tokens=20, seed=1), 3),
        (PROMPTS[4], SamplingParams(temperature=0.7, top_k=20, max_new_tokens=15, seed=2), 2),
        (PROMPTS[1], SamplingParams(temperature=1.2, top_p=0.8, max_new_tokens=25, seed=3), 1),
        (PROMPTS[0], greedy(12), 2),
    ]
    generations = [served.submit(request(p, q, n)) for p, q, n in cases]
    for (prompt, params, n), generation in zip(cases, generations, strict=True):
        samples = generation.result()
        assert len(samples) == n
        for draw, sample in enumerate(samples):
            stream = backend.stream(prompt, choice_params(params, 0, draw))
            text = "".join(stream)
            assert (sample.text, sample.tokens) == (text, stream.completion.tokens)
    assert served.close(5)


def spy(monkeypatch, name: str) -> list:
    """Record each call of BatchRunner.<name> (its arguments after self)."""
    calls = []
    original = getattr(BatchRunner, name)

    def recorded(self, *args):
        calls.append((self, *args))
        return original(self, *args)

    monkeypatch.setattr(BatchRunner, name, recorded)
    return calls


def test_samples_share_one_prefill(learned, monkeypatch):
    chunks = spy(monkeypatch, "_prefill_chunk")
    joined = spy(monkeypatch, "_join")
    served = engine(learned, max_batch=8)
    params = SamplingParams(temperature=1.0, max_new_tokens=8, seed=5)
    samples = served.submit(GenerationRequest((PROMPTS[2], PROMPTS[3]), params, n=3)).result()
    assert len(samples) == 6 and len(chunks) == 2  # two prompts, one prefill each
    assert [len(prompt.members) for _, prompt, _ in joined] == [3, 3]
    greedy_samples = served.submit(request(PROMPTS[2], greedy(8), n=4)).result()
    assert len({s.text for s in greedy_samples}) == 1
    assert [len(prompt.members) for _, prompt, _ in joined[2:]] == [1]  # one row for four
    assert served.close(5)


def test_chunked_prefill_gives_the_same_tokens(backend, monkeypatch):
    chunks = spy(monkeypatch, "_prefill_chunk")
    prompt = PROMPTS[4]
    want = backend.complete([prompt], greedy(20))[0][0]
    served = engine(backend, prefill_chunk=7)
    (sample,) = served.submit(request(prompt, greedy(20))).result()
    assert sample.text == want.text
    assert [take for _, _, take in chunks][:2] == [7, 7]
    assert len(chunks) == -(-want.prompt_tokens // 7)
    assert served.close(5)


def test_cancel_drops_rows_within_a_step(learned, monkeypatch):
    served = engine(learned, max_batch=4)
    long = greedy(100, ignore_eos=True)
    stays = served.submit(request(PROMPTS[1], long))
    leaves = served.submit(request(PROMPTS[2], long))
    after_cancel = []  # for each decode step after cancel(): whether its row was in it
    original = BatchRunner._decode

    def decode(self):
        if leaves.cancelled:
            after_cancel.append(any(row.request.generation is leaves for row in self.rows))
        return original(self)

    monkeypatch.setattr(BatchRunner, "_decode", decode)
    events = leaves.iter_events()
    next(events)
    leaves.cancel()
    with pytest.raises(ApiError) as error:
        list(events)
    assert error.value.status == 499
    (sample,) = stays.result()
    assert sample.tokens == 100 and sum(after_cancel) <= 1 and len(after_cancel) > 5
    assert served.metrics.value("generations_cancelled") == 1
    assert served.close(5)


def test_admission_is_first_come_first_served(learned, monkeypatch):
    started = spy(monkeypatch, "_start")
    served = engine(learned, max_batch=1, max_queue=16)
    generations = [served.submit(request(p, greedy(6))) for p in PROMPTS]
    for generation in generations:
        generation.result()
    order = [prompt.request.generation for _, prompt in started]
    assert order == generations
    firsts = [g.first_token for g in generations if g.first_token is not None]
    assert firsts == sorted(firsts)
    assert served.close(5)


def test_overloaded_when_the_queue_is_full(learned):
    served = engine(learned, max_batch=1, max_queue=1)
    long = greedy(120, ignore_eos=True)
    running = [served.submit(request(PROMPTS[1], long)) for _ in range(2)]
    with pytest.raises(Overloaded):
        served.submit(request(PROMPTS[1], long))
    assert served.metrics.value("generations_rejected") == 1
    for generation in running:
        generation.cancel()
    assert served.close(5)


def test_fit_fim_keeps_the_text_around_the_cursor():
    prefix, suffix = list(range(100)), list(range(200, 260))
    kept_prefix, kept_suffix = fit_fim(prefix, suffix, 40)
    assert kept_prefix == prefix[-30:] and kept_suffix == suffix[:10]
    assert fit_fim(prefix[:5], suffix, 40) == (prefix[:5], suffix[:35])  # unused room
    assert fit_fim(prefix, suffix[:3], 40) == (prefix[-37:], suffix[:3])


@pytest.mark.parametrize("runner", ["batch", "threads"])
def test_truncation_keeps_the_end_of_the_prompt(learned, runner):
    backend = learned if runner == "batch" else ThreadsOnly(learned)
    served = engine(backend)
    assert isinstance(served._runner, BatchRunner if runner == "batch" else ThreadRunner)
    prompt = TEXT * 2  # far more than the 128-token context
    ids = learned.prompt_ids(prompt)
    params = greedy(28)
    (sample,) = served.submit(served.prepare(request(prompt, params))).result()
    assert sample.prompt_tokens == 100
    fitted = learned.fit_prompt(prompt, None, 28)
    assert fitted == ids[-100:]
    stream = learned.stream_ids(fitted, params)
    assert sample.text == "".join(stream)
    # TGI's truncate keeps the last N prompt tokens, whatever room is left.
    (sample,) = served.submit(request(prompt, params, truncate=10)).result()
    assert sample.prompt_tokens == 10
    assert sample.text == "".join(learned.stream_ids(ids[-10:], params))
    # A fill in the middle keeps the end of the prefix and the start of the suffix.
    suffix = OTHER_PY * 3
    (sample,) = served.submit(request(prompt, params, suffix=suffix)).result()
    layout = learned.fit_prompt(prompt, suffix, 28)
    assert sample.prompt_tokens == len(layout) == 100
    prefix_ids, suffix_ids, (p, s, m) = learned._fim_parts(prompt, suffix)
    kept_prefix, kept_suffix = fit_fim(prefix_ids, suffix_ids, 97)
    assert layout == [p, *kept_prefix, s, *kept_suffix, m]  # psm
    assert kept_prefix == prefix_ids[-73:] and kept_suffix == suffix_ids[:24]
    assert served.close(5)


def test_truncation_off_refuses_long_prompts(learned):
    served = engine(learned, truncate=False)
    with pytest.raises(ApiError) as error:
        served.prepare(request(TEXT * 2, greedy(28)))
    assert error.value.status == 400
    assert served.prepare(request(TEXT * 2, greedy(28), truncate=50))  # fits once cut
    # Submitted without prepare, the scheduler refuses it alone (400) and goes on.
    with pytest.raises(ApiError) as error:
        served.submit(request(TEXT * 2, greedy(28))).result()
    assert error.value.status == 400
    assert served.submit(request(PROMPTS[1], greedy(5))).result()[0].tokens == 5
    assert served.close(5)


class ThreadsOnly:
    """The codekiln backend without batch_engine: the engine runs it on worker threads."""

    def __init__(self, backend: CodekilnBackend) -> None:
        self._backend = backend

    def __getattr__(self, name: str):
        if name == "batch_engine":
            raise AttributeError(name)
        return getattr(self._backend, name)


def test_a_failing_request_leaves_the_scheduler_running(learned, monkeypatch):
    served = engine(learned, max_batch=4)
    # A request that breaks while it is set up fails alone.
    original = CodekilnBackend._new_sample

    def broken(self, params):
        if params.max_new_tokens == 13:
            raise RuntimeError("boom")
        return original(self, params)

    monkeypatch.setattr(CodekilnBackend, "_new_sample", broken)
    bad = served.submit(request(PROMPTS[1], greedy(13)))
    good = served.submit(request(PROMPTS[1], greedy(8)))
    with pytest.raises(ApiError) as error:
        bad.result()
    assert error.value.status == 500
    assert good.result()[0].tokens == 8
    # So does one whose sampling breaks while it decodes beside others.
    probs = batching.sampling_probs
    steps = {"n": 0}

    def breaks_later(logits, params):
        steps["n"] += params.top_k == 7
        if params.top_k == 7 and steps["n"] == 5:
            raise RuntimeError("probability tensor contains nan")
        return probs(logits, params)

    monkeypatch.setattr(batching, "sampling_probs", breaks_later)
    sampled = SamplingParams(temperature=0.8, top_k=7, max_new_tokens=20, seed=1, ignore_eos=True)
    bad = served.submit(request(PROMPTS[2], sampled, n=2))
    good = served.submit(request(PROMPTS[1], greedy(20, ignore_eos=True)))
    with pytest.raises(ApiError) as error:
        bad.result()
    assert error.value.status == 500
    assert good.result()[0].tokens == 20
    # A forward that fails takes down the batch it ran, not the scheduler.
    step = learned.step
    calls = {"n": 0}

    def flaky(*args):
        if calls["n"] == 0:
            calls["n"] += 1
            raise RuntimeError("device lost")
        return step(*args)

    monkeypatch.setattr(learned, "step", flaky)
    with pytest.raises(ApiError):
        served.submit(request(PROMPTS[2], greedy(8))).result()
    assert served.submit(request(PROMPTS[2], greedy(8))).result()[0].tokens == 8
    assert served._runner._thread.is_alive()
    assert served.close(5)


def test_metrics_follow_the_batch(learned):
    served = engine(learned, max_batch=4)
    seen = {"occupancy": 0, "rate": 0.0}
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen["occupancy"] = max(seen["occupancy"], served.metrics.value("batch_occupancy"))
            seen["rate"] = max(seen["rate"], served.metrics.value("tokens_per_second"))
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    generations = [served.submit(request(p, greedy(40, ignore_eos=True))) for p in PROMPTS[:6]]
    samples = [g.result()[0] for g in generations]
    done.set()
    watcher.join()
    metrics = served.metrics
    assert seen["occupancy"] == 4 and seen["rate"] > 0
    assert metrics.value("generated_tokens") == sum(s.tokens for s in samples) == 240
    assert metrics.value("prompt_tokens") == sum(s.prompt_tokens for s in samples)
    assert len(metrics.observed["time_to_first_token_seconds"]) == 6
    assert metrics.value("queue_length") == 0
    assert served.close(5)
    assert metrics.value("batch_occupancy") == 0


def test_close_finishes_queued_work_then_refuses(learned):
    served = engine(learned, max_batch=2)
    generations = [served.submit(request(p, greedy(10))) for p in PROMPTS[:4]]
    assert served.close(10)
    assert all(len(g.result()) == 1 for g in generations)
    assert not served._runner._thread.is_alive()
    with pytest.raises(Overloaded):
        served.submit(request(PROMPTS[0], greedy(4)))


def test_more_samples_than_rows_and_async_events(learned):
    """n above max_batch is prefilled once per batchful of samples; each still draws what
    its stream draws, and an asyncio route reads the same events."""
    served = engine(learned, max_batch=2)
    params = SamplingParams(temperature=0.9, max_new_tokens=10, seed=4)

    async def read() -> dict[int, str]:
        generation = served.submit(request(PROMPTS[2], params, n=3), asyncio.get_running_loop())
        texts = {choice: "" for choice in range(3)}
        async for event in generation.events():
            if isinstance(event, Delta):
                texts[event.choice] += event.text
            else:
                assert event.sample.text == texts[event.choice]
        return texts

    texts = asyncio.run(read())
    for draw in range(3):
        assert texts[draw] == "".join(learned.stream(PROMPTS[2], choice_params(params, 0, draw)))
    assert served.close(5)
