"""The settings of the HTTP server and the language server, one dataclass each."""

from __future__ import annotations

from dataclasses import dataclass, field

from codekiln.errors import UserError


@dataclass(frozen=True)
class ServeConfig:
    """How `codekiln serve` listens, admits requests and bounds their work.

    Generation is CPU- or GPU-bound: at most `max_batch` sequences decode together (one
    running batch that requests join and leave at token boundaries; 1 turns batching off),
    and at most `max_queue` requests wait, first come first served, for room in it; beyond
    that a request is refused at once (TGI's 429, with Retry-After) rather than left to wait.
    A newcomer's prompt is prefilled `prefill_chunk` tokens at a time between decode steps,
    so a long prompt does not stall the batch. A prompt that does not fit the context with
    the tokens asked for is trimmed (the end of the prefix and the start of the suffix kept,
    as TGI's `truncate` does) when `truncate` is set, refused otherwise. A request must
    arrive whole within `read_timeout` seconds.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = field(default=None, repr=False)  # Bearer token; /health stays open
    model_name: str | None = None  # the name /v1/models lists (default: the backend's)
    max_batch: int = 16
    max_queue: int = 64
    prefill_chunk: int = 512  # prompt tokens prefilled per step between decode steps
    truncate: bool = True  # trim over-long prompts instead of refusing them
    read_timeout: float = 30.0  # seconds for a client to send its whole request
    retry_after: int = 1  # seconds, the Retry-After of a refused (full) request
    max_body_bytes: int = 2 * 1024 * 1024
    max_new_tokens: int = 4096  # largest max_tokens / max_new_tokens a request may ask for
    max_n: int = 16  # samples per prompt
    max_choices: int = 64  # prompts x samples in one request
    max_document_chars: int = 1_000_000  # what /overlap checks at most

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise UserError(f"serve: port must be in 0..65535 (0: any free port), got {self.port}")
        for name in ("max_batch", "prefill_chunk", "max_body_bytes", "max_new_tokens", "max_n"):
            if getattr(self, name) < 1:
                raise UserError(f"serve: {name} must be at least 1, got {getattr(self, name)}")
        if self.max_queue < 0:
            raise UserError(f"serve: max_queue must be 0 or more, got {self.max_queue}")
        if self.max_choices < self.max_n:
            raise UserError(
                f"serve: max_choices ({self.max_choices}) must be at least max_n ({self.max_n})"
            )
        if self.api_key is not None and not self.api_key.strip():
            raise UserError("serve: api_key must not be empty: give a token, or none for no auth")
        if not self.read_timeout > 0 or self.retry_after < 0:
            raise UserError("serve: read_timeout must be positive and retry_after 0 or more")
        if self.max_document_chars < 1:
            raise UserError("serve: max_document_chars must be at least 1")


@dataclass(frozen=True)
class LspConfig:
    """How `codekiln lsp` builds prompts and samples completions.

    `context_tokens` bounds prompt + completion (0: the model's context, or 2048 where the
    backend does not know it); `prefix_share` of the prompt budget goes to the text before
    the cursor, the rest (and whatever the suffix leaves unused) to the text after it.
    `endpoint_api` says what `--endpoint` is: `openai` (codekiln serve, vLLM, TGI),
    `llama.cpp` (llama-server: FIM through its `/infill`), or `auto`, llama.cpp's when the
    server answers `GET /props` as llama.cpp does.
    """

    context_tokens: int = 0
    max_new_tokens: int = 64
    temperature: float = 0.2
    top_p: float = 0.95
    prefix_share: float = 0.75
    fim: bool = True  # fill in the middle when the model can
    multiline_stop: tuple[str, ...] = ("\n\n\n",)
    endpoint_api: str = "auto"

    def __post_init__(self) -> None:
        if self.context_tokens < 0:
            raise UserError(
                f"lsp: context_tokens must be 0 (the model's) or positive, "
                f"got {self.context_tokens}"
            )
        if self.max_new_tokens < 1:
            raise UserError(f"lsp: max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not 0 < self.prefix_share <= 1:
            raise UserError(f"lsp: prefix_share must be in (0, 1], got {self.prefix_share}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise UserError("lsp: temperature must be >= 0 and top_p in (0, 1]")
        if self.endpoint_api not in ("auto", "openai", "llama.cpp"):
            raise UserError(
                f"lsp: endpoint_api must be auto, openai or llama.cpp, got {self.endpoint_api!r}"
            )
        object.__setattr__(self, "multiline_stop", tuple(self.multiline_stop))
