"""`CTranslate2Backend`: an exported model folder run by CTranslate2, and the conversion.

CTranslate2 is a C++ inference engine for transformers with its own int8 kernels; on a
CPU it decodes a small model faster than PyTorch's kernels do (bench/generate.py measures
both). It reads its own format: `convert_ctranslate2` writes that, with ctranslate2's
converter, into `<folder>/ctranslate2-<quantization>/` (or a folder given), once: a
manifest.json written last records the source files it came from, and a folder whose
manifest matches is reused.

Prompts are codekiln's, token for token: the folder's tokenizer.json, the same FIM layout
and the same empty-prompt start as `CodekilnBackend`. Text is decoded incrementally and
stop strings are checked as each token arrives (a stopped sample leaves the batch at once);
the n samples of a prompt decode as one batch.

What differs: CTranslate2 seeds its random generator once per worker thread, so `seed`
cannot make its samples repeat (greedy decoding is exact: float32 gives the same tokens as
codekiln's engine); temperature, top-k and top-p are its own implementation of them. It
converts multi-query gpt_bigcode (StarCoder) folders; its converter has no StarCoder2
support and reads every gpt_bigcode model as multi-query.
ctranslate2 is an optional dependency: `pip install 'codekiln[ctranslate2]'`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from codekiln.errors import UserError
from codekiln.generate.backend import check_fim_order, model_name
from codekiln.generate.native import (
    TokenizedBackend,
    _config_eos_ids,
    _read_tokenizer,
    _Sample,
)
from codekiln.generate.params import Completion, SamplingParams
from codekiln.tokenizer.special import EOS

# dtype -> the weights' quantization in the converted folder (also its compute type).
QUANTIZATIONS = {"float32": "float32", "int8": "int8", "bfloat16": "bfloat16"}
INSTALL = "pip install 'codekiln[ctranslate2]'"


def _ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise UserError(f"the ctranslate2 engine needs ctranslate2: {INSTALL}") from None
    return ctranslate2


def check_quantization(quantization: str):
    """The ctranslate2 module, once the package and `quantization` are known good."""
    ctranslate2 = _ctranslate2()
    if quantization not in QUANTIZATIONS.values():
        raise UserError(
            f"quantization must be one of {', '.join(QUANTIZATIONS.values())}, got {quantization!r}"
        )
    return ctranslate2


def convert_ctranslate2(
    folder: str | Path, out: str | Path | None = None, quantization: str = "int8"
) -> Path:
    """The CTranslate2 copy of the model folder `folder`, with `quantization` ("float32",
    "int8" or "bfloat16") weights, at `out` (default `folder/ctranslate2-<quantization>`):
    converted unless a copy made from the same files is there already. Returns its path."""
    from codekiln.manifest import (
        atomic_path,
        fingerprint,
        package_versions,
        read_manifest,
        write_manifest,
    )

    ctranslate2 = check_quantization(quantization)
    folder = Path(folder)
    _check_convertible(folder)
    out = Path(out) if out is not None else folder / f"ctranslate2-{quantization}"
    source = {
        "files": _source_files(folder),
        "quantization": quantization,
        "ctranslate2": ctranslate2.__version__,
    }
    done = read_manifest(out)
    if done is not None and done.get("source") == fingerprint(source):
        return out
    if out.exists() and done is None and any(out.iterdir()):
        raise UserError(f"{out} exists and is not a CTranslate2 folder codekiln wrote: move it")
    try:
        with atomic_path(out) as tmp:
            from ctranslate2.converters import TransformersConverter

            converter = TransformersConverter(str(folder))
            try:
                converter.convert(str(tmp), quantization=quantization, force=True)
            except (ValueError, NotImplementedError, OSError, KeyError) as exc:
                first_line = (str(exc).strip().splitlines() or [repr(exc)])[0]
                raise UserError(f"CTranslate2 cannot convert {folder}: {first_line}") from None
            _complete_config(tmp / "config.json", _end_of_text(folder))
            write_manifest(
                tmp,
                "ctranslate2",
                source=fingerprint(source),
                quantization=quantization,
                model=str(folder.resolve()),
                versions=package_versions("ctranslate2", "transformers"),
            )
    except OSError as exc:
        raise UserError(
            f"cannot write the CTranslate2 folder {out} ({exc.strerror or exc}): give a "
            "writable folder (ct2_dir=..., or `codekiln export ... --ctranslate2`)"
        ) from None
    return out


class CTranslate2Backend(TokenizedBackend):
    """A gpt_bigcode model folder decoded by CTranslate2 (see the module docstring).

    dtype: "float32", "int8" or "bfloat16" (what this CPU or GPU supports); device "cpu"
    or "cuda"; threads: CTranslate2's threads per generation (0: its default); ct2_dir: the
    converted folder (default: beside the weights).
    """

    def __init__(
        self,
        folder: str | Path,
        device: str | None = None,
        dtype: str = "float32",
        fim_order: str = "psm",
        threads: int = 0,
        ct2_dir: str | Path | None = None,
    ) -> None:
        ctranslate2 = _ctranslate2()
        check_fim_order(fim_order)
        if dtype not in QUANTIZATIONS:
            raise UserError(f"dtype must be one of {', '.join(QUANTIZATIONS)}, got {dtype!r}")
        folder = Path(folder)
        device = device or ("cuda" if ctranslate2.get_cuda_device_count() else "cpu")
        supported = ctranslate2.get_supported_compute_types(device)
        if QUANTIZATIONS[dtype] not in supported:
            raise UserError(
                f"CTranslate2 cannot compute in {dtype} on this {device}; it can in: "
                f"{', '.join(sorted(supported))}"
            )
        converted = convert_ctranslate2(folder, ct2_dir, QUANTIZATIONS[dtype])
        self.generator = ctranslate2.Generator(
            str(converted), device=device, compute_type=QUANTIZATIONS[dtype], intra_threads=threads
        )
        vocabulary = json.loads((converted / "vocabulary.json").read_text(encoding="utf-8"))
        self._tokens = vocabulary  # id -> the token string CTranslate2 takes
        tokenizer = _read_tokenizer(folder)
        self._use_tokenizer(tokenizer, model_name(folder), fim_order, _config_eos_ids(folder))
        self.context_length = _context_length(folder)

    def _generate(self, ids: list[int], params: SamplingParams, seed: int) -> list[Completion]:
        rows = 1 if params.is_greedy else params.n  # greedy samples are all the same
        budget = self._budget(len(ids), params)
        eos_ids = frozenset() if params.ignore_eos else self.eos_ids
        samples = [self._new_sample(params) for _ in range(rows)]
        counts = [0] * rows
        lock = threading.Lock()  # CTranslate2 may call back from its own threads

        def on_token(step) -> bool:
            """Whether the row is done (CTranslate2 then drops it from the batch)."""
            with lock:
                sample = samples[step.batch_id]
                if sample.finish_reason is None:
                    counts[step.batch_id] += 1
                    sample.push(step.token_id, eos_ids, last=counts[step.batch_id] == budget)
                    sample.pending.clear()
                return sample.finish_reason is not None

        prompt = [self._tokens[i] for i in ids]
        self.generator.generate_batch(
            [prompt] * rows,
            callback=on_token,
            include_prompt_in_result=False,
            **self._options(params, budget),
        )
        for sample, count in zip(samples, counts, strict=True):
            _close(sample, count, budget)
        completions = [sample.completion(len(ids)) for sample in samples]
        return [replace(completions[i % rows]) for i in range(params.n)]

    def _stream(self, ids: list[int], params: SamplingParams):
        budget = self._budget(len(ids), params)
        eos_ids = frozenset() if params.ignore_eos else self.eos_ids
        sample = self._new_sample(params)
        prompt = [self._tokens[i] for i in ids]
        steps = self.generator.generate_tokens(prompt, **self._options(params, budget))
        count = 0
        try:
            for step in steps:
                count += 1
                sample.push(step.token_id, eos_ids, last=count == budget)
                if sample.pending:
                    yield "".join(sample.pending)
                    sample.pending.clear()
                if sample.finish_reason is not None:
                    break
        finally:
            steps.close()  # stops CTranslate2's decoding of this prompt
        _close(sample, count, budget)
        if sample.pending:
            yield "".join(sample.pending)
        return sample.completion(len(ids))

    def _options(self, params: SamplingParams, budget: int) -> dict[str, Any]:
        """generate_batch's and generate_tokens' settings for `params` and `budget` new
        tokens (the prompt is not counted; ignore_eos: no end token, exactly `budget`)."""
        options: dict[str, Any] = {
            "max_length": budget,
            "end_token": [] if params.ignore_eos else sorted(self.eos_ids),
            "min_length": budget if params.ignore_eos else 0,
        }
        if params.is_greedy:
            options["sampling_topk"] = 1
        else:
            options.update(
                sampling_topk=params.top_k,  # 0: the whole vocabulary, as ours
                sampling_topp=params.top_p,
                sampling_temperature=params.temperature,
            )
        return options


def _close(sample: _Sample, count: int, budget: int) -> None:
    """Finish a sample whose last token CTranslate2 did not pass on: every token, end
    tokens included, comes through the callback, so this is a safety net, not a path."""
    if sample.finish_reason is None:
        sample._finish("length" if count >= budget else "eos")


def _check_convertible(folder: Path) -> None:
    """UserError for a folder ctranslate2's converter cannot turn into a working model."""
    from codekiln.model.hf import read_hf_config
    from codekiln.model.lora import is_adapter

    if not folder.is_dir():
        raise UserError(f"model folder {folder} does not exist")
    if is_adapter(folder):
        raise UserError(
            f"{folder} is a LoRA adapter: CTranslate2 needs whole weights; merge it first "
            "(`codekiln train ... --lora --merge`, or `codekiln export RUN --merge`)"
        )
    config = read_hf_config(folder)
    kind = config.get("model_type")
    if kind == "starcoder2":
        raise UserError(
            f"CTranslate2's converter has no support for starcoder2 models ({folder}): "
            "use --engine codekiln (with --dtype int8 on a CPU)"
        )
    if kind != "gpt_bigcode":
        raise UserError(
            f"the ctranslate2 engine runs gpt_bigcode (StarCoder) folders; {folder} is "
            f"{kind!r}: use --engine transformers"
        )
    if config.get("multi_query", True) is False:
        raise UserError(
            f"CTranslate2's converter reads every gpt_bigcode model as multi-query; {folder} "
            "has multi-head attention: use --engine codekiln"
        )


def _source_files(folder: Path) -> list[list]:
    """Name, size and modification time of the files a conversion reads."""
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".bin")
    )
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def _complete_config(path: Path, end_of_text: str | None) -> None:
    """Fill the converted config.json's token names that transformers 5 leaves unset.

    The converter copies bos_token, eos_token and unk_token from the tokenizer's config; a
    tokenizer that names only an eos_token (StarCoder's under transformers 5), or a folder
    with no tokenizer_config.json (a training run's export), gives null, which CTranslate2
    refuses to load. StarCoder uses <|endoftext|> for all three: `end_of_text`, the name of
    the folder's end-of-text token, fills them. Other null settings are dropped: CTranslate2
    then uses its defaults.
    """
    config = json.loads(path.read_text(encoding="utf-8"))
    eos = config.get("eos_token") or end_of_text
    for key in ("bos_token", "eos_token", "unk_token"):
        if config.get(key) is None and eos is not None:
            config[key] = eos
    config = {key: value for key, value in config.items() if value is not None}
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _end_of_text(folder: Path) -> str | None:
    """The end-of-text token's name: config.json's eos_token_id in the folder's tokenizer,
    else <|endoftext|> where the tokenizer has it."""
    tokenizer = _read_tokenizer(folder)
    for token_id in _config_eos_ids(folder):
        name = tokenizer.id_to_token(token_id)
        if name is not None:
            return name
    return EOS if tokenizer.token_to_id(EOS) is not None else None


def _context_length(folder: Path) -> int:
    from codekiln.model.hf import config_from_hf, read_hf_config

    return config_from_hf(read_hf_config(folder)).n_positions
