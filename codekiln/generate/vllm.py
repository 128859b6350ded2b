"""`VLLMBackend`: a model folder served by vLLM's engine, for users with a CUDA GPU.

vLLM batches every running request into each forward pass (continuous batching) over a
paged KV cache. One background thread drives its `LLMEngine`: it steps the engine while any
request runs and hands each request's new tokens to the thread that asked. Calls from many
threads (the server's workers) thus share the batches.

Prompts are codekiln's, token for token (the folder's tokenizer.json, the same FIM layout
as `CodekilnBackend`), passed to vLLM as token ids; its new tokens are decoded and checked
for stop strings here, as every engine does, and a request whose samples are all done is
aborted at once. Seeds go to vLLM per request, so a seeded request repeats on the same
setup. vllm is an optional dependency: `pip install 'codekiln[vllm]'`.
"""

from __future__ import annotations

import itertools
import queue
import threading
from pathlib import Path
from typing import Any

from codekiln.errors import UserError
from codekiln.generate.backend import check_fim_order, model_name
from codekiln.generate.native import (
    TokenizedBackend,
    _config_eos_ids,
    _read_tokenizer,
)
from codekiln.generate.params import SamplingParams

DTYPES = ("auto", "bfloat16", "float16", "float32")


def _vllm():
    try:
        import vllm
    except ImportError:
        raise UserError("the vllm engine needs vllm: pip install 'codekiln[vllm]'") from None
    return vllm


class VLLMBackend(TokenizedBackend):
    """A Hugging Face model folder on a CUDA GPU through vLLM (see the module docstring).

    engine_options go to vllm.EngineArgs (gpu_memory_utilization, max_model_len, ...).
    """

    def __init__(
        self,
        folder: str | Path,
        device: str | None = None,
        dtype: str = "auto",
        fim_order: str = "psm",
        **engine_options: Any,
    ) -> None:
        import torch

        vllm = _vllm()
        check_fim_order(fim_order)
        if dtype not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if device is not None and torch.device(device).type != "cuda":
            raise UserError(f"the vllm engine runs on a CUDA GPU, not {device}")
        if not torch.cuda.is_available():
            raise UserError(
                "the vllm engine needs a CUDA GPU and this machine has none: use --engine "
                "codekiln (--dtype int8 on a CPU) or ctranslate2"
            )
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"model folder {folder} does not exist")
        self._vllm = vllm
        args = vllm.EngineArgs(model=str(folder), dtype=dtype, **engine_options)
        self._engine = vllm.LLMEngine.from_engine_args(args)
        tokenizer = _read_tokenizer(folder)
        self._use_tokenizer(tokenizer, model_name(folder), fim_order, _config_eos_ids(folder))
        self.context_length = int(self._engine.get_model_config().max_model_len)
        self._lock = threading.Lock()  # the engine is not thread-safe: every call holds it
        self._work = threading.Condition(self._lock)
        self._outputs: dict[str, queue.SimpleQueue] = {}
        self._ids = itertools.count()
        threading.Thread(target=self._drive, name="codekiln-vllm", daemon=True).start()

    def _decode(self, ids: list[int], params: SamplingParams, seed: int, samples: list):
        """Feed each sample the tokens vLLM makes for it, yielding after each batch of
        them, until every sample is done; the request is aborted as it ends."""
        budget = self._budget(len(ids), params)
        eos_ids = frozenset() if params.ignore_eos else self.eos_ids
        settings = self._vllm.SamplingParams(
            n=len(samples),
            temperature=0.0 if params.is_greedy else params.temperature,
            top_p=1.0 if params.is_greedy else params.top_p,
            top_k=params.top_k if params.top_k and not params.is_greedy else -1,
            seed=seed,
            max_tokens=budget,
            ignore_eos=params.ignore_eos,
            stop_token_ids=sorted(eos_ids),
        )
        request_id = f"codekiln-{next(self._ids)}"
        outputs: queue.SimpleQueue = queue.SimpleQueue()
        with self._work:
            self._outputs[request_id] = outputs
            self._engine.add_request(request_id, {"prompt_token_ids": ids}, settings)
            self._work.notify()
        seen = [0] * len(samples)  # tokens of each sample fed so far (outputs accumulate)
        try:
            while any(sample.finish_reason is None for sample in samples):
                output = outputs.get()
                if isinstance(output, BaseException):
                    raise output
                for choice in output.outputs:
                    sample = samples[choice.index]
                    for token in list(choice.token_ids)[seen[choice.index] :]:
                        seen[choice.index] += 1
                        if sample.finish_reason is None:
                            sample.push(token, eos_ids, last=seen[choice.index] == budget)
                    if choice.finish_reason is not None and sample.finish_reason is None:
                        # Ended on a stop token vLLM kept out of token_ids.
                        sample._finish("length" if choice.finish_reason == "length" else "eos")
                yield
        finally:
            with self._lock:
                self._outputs.pop(request_id, None)
                self._engine.abort_request([request_id])

    def _drive(self) -> None:
        """Step the engine while requests run; route each output to its request's queue."""
        while True:
            with self._work:
                while not self._engine.has_unfinished_requests():
                    self._work.wait()
                try:
                    results: list[Any] = self._engine.step()
                except Exception as exc:  # noqa: BLE001 - every waiting caller gets it
                    results = [(request_id, exc) for request_id in self._outputs]
                    for request_id, _ in results:
                        self._engine.abort_request([request_id])
                routes = dict(self._outputs)
            for result in results:
                request_id, item = (
                    result if isinstance(result, tuple) else (result.request_id, result)
                )
                if request_id in routes:
                    routes[request_id].put(item)
