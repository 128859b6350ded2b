"""Instruction-tuning data: reading pairs, their layouts (against transformers' chat
templates), and packed batches with completion-only labels."""

import inspect
import json
import pickle
import textwrap
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import small_bpe

from codekiln.curate.commits import commit_text
from codekiln.curate.pipeline import RECORD_SCHEMA
from codekiln.errors import UserError
from codekiln.tokenizer.special import EOS, SPECIAL_TOKENS
from codekiln.train.sft import SftLoader, SftLoaderConfig, valid_mask
from codekiln.train.sft_layout import (
    PLAIN_PROMPT,
    ChatFormat,
    encode_pairs,
    load_chat_format,
    render_chat,
)
from codekiln.train.sft_pairs import Pair, commit_pair, read_pairs

CHAT_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# StarChat's template over several lines, where trim_blocks and lstrip_blocks matter.
STARCHAT = """\
{% for message in messages %}
    {% if message['role'] == 'user' %}
{{ '<|user|>\\n' + message['content'] + '<|end|>\\n' }}{% elif message['role'] == 'system' %}
{{ '<|system|>\\n' + message['content'] + '<|end|>\\n' }}{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\\n' + message['content'] + '<|end|>\\n' + eos_token }}{% else %}
{{ raise_exception('unknown role ' + message['role']) }}{% endif %}
{% endfor %}
{% if add_generation_prompt %}
{{ '<|assistant|>\\n' }}{% endif %}
"""

# The same, written carelessly: the newline after each expression is output, so its
# generation prompt ends in a blank line the full conversation does not have.
LOOSE = STARCHAT.replace("}}{%", "}}\n    {%")

# One that reads bos_token, tojson and loop controls.
WITH_BOS = (
    "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
    "[{{ m.role | upper }}] {{ m.content | tojson }}\n{% endfor %}"
    "{% if add_generation_prompt %}[ASSISTANT] {% endif %}"
)

CODE = '''def mean(values):
    """The average of a non-empty list of numbers."""
    return sum(values) / len(values)
'''


def corpus() -> list[str]:
    docs = [inspect.getsource(textwrap), inspect.getsource(json.decoder), CODE]
    return docs + ["Question: Answer: fix the bug in the parser"] * 5


@pytest.fixture(scope="module")
def tok():
    return small_bpe(corpus(), list(SPECIAL_TOKENS) + CHAT_TOKENS, vocab_size=500)


@pytest.fixture(scope="module")
def plain_tok():
    """A tokenizer without StarCoder's commit tokens."""
    return small_bpe(corpus(), [EOS], vocab_size=400)


def write_jsonl(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# Reading pairs.


def test_read_jsonl(tmp_path):
    path = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            json.dumps({"prompt": "Add two numbers", "completion": "a + b", "source": "x"}),
            "",
            "   ",
            json.dumps({"prompt": "", "completion": "pass"}),
            json.dumps({"prompt": "Add two numbers", "completion": "a + b"}),
        ],
    )
    assert read_pairs(path) == [
        Pair("Add two numbers", "a + b"),
        Pair("", "pass"),
        Pair("Add two numbers", "a + b"),
    ]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "line 2: not JSON"),
        ('["prompt", "completion"]', 'line 2: a list, not a {"prompt", "completion"} object'),
        ('{"completion": "x"}', 'line 2: no "prompt" field'),
        ('{"prompt": "x"}', 'line 2: no "completion" field'),
        ('{"prompt": "x", "completion": 3}', 'line 2: "completion" is a int, not a string'),
        ('{"prompt": null, "completion": "x"}', 'line 2: "prompt" is a NoneType, not a string'),
    ],
)
def test_read_jsonl_bad_line(tmp_path, line, message):
    good = json.dumps({"prompt": "a", "completion": "b"})
    path = write_jsonl(tmp_path / "pairs.jsonl", [good, line, good])
    with pytest.raises(UserError) as err:
        read_pairs(path)
    assert str(err.value).startswith(f"{path} {message}")
    assert "\n" not in str(err.value)


def test_read_jsonl_other_errors(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(UserError, match=r"line 2: not UTF-8"):
        read_pairs(path)
    write_jsonl(path, ["", "  "])
    with pytest.raises(UserError, match="holds no pairs"):
        read_pairs(path)
    with pytest.raises(UserError, match="no instruction pairs at"):
        read_pairs(tmp_path / "missing.jsonl")
    (tmp_path / "part-00000.parquet").write_bytes(b"")
    with pytest.raises(UserError, match="give the curated folder"):
        read_pairs(tmp_path / "part-00000.parquet")


def curated_row(content: str, kind: str = "commit", **extra) -> dict:
    row = {
        "id": f"id-{abs(hash(content))}",
        "content": content,
        "repo": "octo/pack",
        "path": "src/stats.py",
        "lang": "Python",
        "license": "mit",
        "stars": 3,
        "kind": kind,
        "source": "git",
        "size": len(content),
        "max_line_length": 40,
        "avg_line_length": 20.0,
        "alphanum_fraction": 0.7,
    }
    return row | extra


def write_curated(folder, rows):
    folder.mkdir()
    table = pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)
    pq.write_table(table, folder / "part-00000.parquet")
    return folder


def test_read_commit_records(tmp_path):
    fixed = CODE.replace("return sum", "if not values:\n        return 0.0\n    return sum")
    folder = write_curated(
        tmp_path / "curated",
        [
            curated_row(commit_text("Handle an empty list in mean", CODE, fixed)),
            curated_row(CODE, kind="file"),
            curated_row(commit_text("Add the statistics module", "", CODE)),
            # The file itself holds StarCoder's markers: its parts cannot be told apart.
            curated_row(commit_text("Document the format", "", commit_text("m", "a", "b"))),
            # One marker inside a file is still unambiguous.
            curated_row(commit_text("Quote the marker", "s = '<commit_msg>'", "s = ''")),
        ],
    )
    skipped = Counter()
    pairs = read_pairs(folder, skipped)
    assert pairs == [
        commit_pair("Handle an empty list in mean", CODE, fixed),
        commit_pair("Add the statistics module", "", CODE),
        commit_pair("Quote the marker", "s = '<commit_msg>'", "s = ''"),
    ]
    assert pairs[0] == Pair(
        f"Handle an empty list in mean\n\n{CODE}", fixed, "Handle an empty list in mean", CODE
    )
    assert pairs[1].prompt == "Add the statistics module"
    assert skipped == {"not_commit": 1, "commit_ambiguous": 1}
    assert read_pairs(folder) == pairs


def test_curated_folder_without_commits(tmp_path):
    folder = write_curated(tmp_path / "curated", [curated_row(CODE, kind="file")])
    with pytest.raises(UserError, match="--commits"):
        read_pairs(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no curated shards"):
        read_pairs(tmp_path / "empty")


# Layouts.


def hf_tokenizer(tok, template, **tokens):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=template, **tokens)


CONVERSATIONS = [
    [{"role": "user", "content": "Write mean()."}],
    [{"role": "user", "content": "Write mean()."}, {"role": "assistant", "content": CODE}],
    [
        {"role": "system", "content": "You write Python."},
        {"role": "user", "content": 'Quote "this" & <that>'},
        {"role": "assistant", "content": "print('ok')\n"},
    ],
]


@pytest.mark.parametrize("template", [STARCHAT, LOOSE, WITH_BOS])
@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_render_chat_equals_transformers(tok, template, messages, add_generation_prompt):
    tokens = {"bos_token": "<|system|>", "eos_token": EOS}
    expected = hf_tokenizer(tok, template, **tokens).apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    got = render_chat(template, messages, add_generation_prompt=add_generation_prompt, **tokens)
    assert got == expected


def test_render_chat_errors():
    with pytest.raises(UserError, match="unknown role tool"):
        render_chat(STARCHAT, [{"role": "tool", "content": "x"}], eos_token=EOS)
    with pytest.raises(UserError, match="does not parse"):
        render_chat("{% for %}", [])


def test_load_chat_format(tmp_path, tok):
    hf_tokenizer(tok, STARCHAT, eos_token=EOS).save_pretrained(tmp_path / "saved")
    chat = load_chat_format(tmp_path / "saved")
    assert chat.template == STARCHAT and chat.eos_token == EOS
    assert load_chat_format(tmp_path / "saved" / "tokenizer.json") == chat

    folder = tmp_path / "named"
    folder.mkdir()
    config = {
        "eos_token": {"content": "<|end|>", "special": True},
        "bos_token": EOS,
        "pad_token": None,
        "chat_template": [
            {"name": "tool_use", "template": "T"},
            {"name": "default", "template": WITH_BOS},
        ],
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    chat = load_chat_format(folder)
    assert chat == ChatFormat(WITH_BOS, {"eos_token": "<|end|>", "bos_token": EOS})

    config["chat_template"] = [{"name": "tool_use", "template": "T"}]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match='none called "default"'):
        load_chat_format(folder)
    (folder / "tokenizer_config.json").write_text("{")
    with pytest.raises(UserError, match="not readable JSON"):
        load_chat_format(folder)

    (tmp_path / "bare").mkdir()
    assert load_chat_format(tmp_path / "bare") == ChatFormat() == load_chat_format(None)
    with pytest.raises(UserError, match="no tokenizer at"):
        load_chat_format(tmp_path / "missing")


def test_chat_template_layout_equals_transformers_tokens(tok):
    hf = hf_tokenizer(tok, STARCHAT, eos_token=EOS)
    pairs = [Pair("Write mean().", CODE), commit_pair("Handle empty lists", CODE, CODE + "#\n")]
    encoded = encode_pairs(pairs, tok, ChatFormat(STARCHAT))
    for pair, (prompt, completion) in zip(pairs, encoded, strict=True):
        user = {"role": "user", "content": pair.prompt}
        assistant = {"role": "assistant", "content": pair.completion}
        hf_prompt = hf.apply_chat_template([user], add_generation_prompt=True, return_dict=False)
        hf_full = hf.apply_chat_template([user, assistant], return_dict=False)
        assert prompt.tolist() == hf_prompt
        assert prompt.tolist() + completion.tolist() == hf_full
        assert prompt.dtype == np.int32
    assert tok.decode(encoded[1][1].tolist(), skip_special_tokens=False) == (
        CODE + "#\n<|end|>\n" + EOS
    )
    assert tok.decode(encoded[1][0].tolist(), skip_special_tokens=False) == (
        f"<|user|>\nHandle empty lists\n\n{CODE}<|end|>\n<|assistant|>\n"
    )


def test_special_token_text_in_a_message_is_plain_text(tok):
    end = tok.token_to_id("<|end|>")
    pair = Pair("Why does <|end|> end a turn?", "s = '<|end|><|endoftext|>'\n")
    prompt, completion = encode_pairs([pair], tok, ChatFormat(STARCHAT))[0]
    # Only the turns the template closes have <|end|>; the message's is characters.
    assert prompt.tolist().count(end) == 1 and completion.tolist().count(end) == 1
    assert completion.tolist().count(tok.token_to_id(EOS)) == 1
    text = tok.decode(prompt.tolist() + completion.tolist(), skip_special_tokens=False)
    assert text == render_chat(
        STARCHAT,
        [
            {"role": "user", "content": pair.prompt},
            {"role": "assistant", "content": pair.completion},
        ],
        eos_token=EOS,
    )


def test_template_whose_conversation_does_not_start_with_its_prompt(tok):
    with pytest.raises(UserError, match="does not begin with the generation prompt") as err:
        encode_pairs([Pair("a", "b")], tok, ChatFormat(LOOSE))
    assert "\n" not in str(err.value)


def test_layout_without_template(tok):
    eos = tok.token_to_id(EOS)
    pair = Pair("<filename>stats.py\nWrite mean().", CODE)
    prompt, completion = encode_pairs([pair], tok)[0]
    # Without a template the text is the layout: its special tokens are matched.
    assert prompt.tolist() == tok.encode(pair.prompt, add_special_tokens=False).ids
    assert prompt[0] == tok.token_to_id("<filename>")
    assert completion.tolist() == tok.encode(CODE, add_special_tokens=False).ids + [eos]

    end = tok.token_to_id("<|end|>")
    chat = ChatFormat(None, {"eos_token": "<|end|>"})
    assert encode_pairs([pair], tok, chat)[0][1][-1] == end
    with pytest.raises(UserError, match="no '<nope>' token"):
        encode_pairs([pair], tok, ChatFormat(None, {"eos_token": "<nope>"}))


def plain_ids(tok, text):
    tok = type(tok).from_str(tok.to_str())
    tok.encode_special_tokens = True
    return tok.encode(text, add_special_tokens=False).ids


def test_commit_layout_with_starcoder_tokens(tok):
    before = "s = '<|endoftext|>'\n"
    after = "s = '<commit_after>'\n"
    prompt, completion = encode_pairs([commit_pair("Quote tokens", before, after)], tok)[0]
    ids = {t: tok.token_to_id(t) for t in ("<commit_before>", "<commit_msg>", "<commit_after>")}
    assert prompt.tolist() == (
        [ids["<commit_before>"]]
        + plain_ids(tok, before)
        + [ids["<commit_msg>"]]
        + plain_ids(tok, "Quote tokens")
        + [ids["<commit_after>"]]
    )
    assert completion.tolist() == plain_ids(tok, after) + [tok.token_to_id(EOS)]
    # File text cannot fake a token.
    assert tok.token_to_id(EOS) not in prompt.tolist()
    assert completion.tolist().count(ids["<commit_after>"]) == 0


def test_commit_layout_without_commit_tokens(plain_tok):
    pair = commit_pair("Handle empty lists", CODE, CODE + "#\n")
    prompt, completion = encode_pairs([pair], plain_tok)[0]
    assert (
        plain_tok.decode(prompt.tolist()) == f"Question: Handle empty lists\n\n{CODE}\n\nAnswer: "
    )
    assert PLAIN_PROMPT.format(prompt=pair.prompt) == plain_tok.decode(prompt.tolist())
    assert completion.tolist() == plain_ids(plain_tok, CODE + "#\n") + [plain_tok.token_to_id(EOS)]


# Packing and batches, on hand-made token ids: pair i's prompt starts with 100 + i, so every
# segment says which pair it is.

PAD = 0


def synthetic(count: int, seed: int = 1, longest: int = 12) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        prompt = [100 + i] + rng.integers(1000, 2000, rng.integers(0, 6)).tolist()
        completion = rng.integers(2000, 3000, rng.integers(1, longest)).tolist()
        pairs.append((np.array(prompt, np.int32), np.array(completion, np.int32)))
    return pairs


def loader(encoded, seq_len=16, batch_size=4, rank=0, world_size=1, **kwargs) -> SftLoader:
    config = SftLoaderConfig(seq_len=seq_len, batch_size=batch_size, **kwargs)
    return SftLoader(encoded, PAD, config, rank=rank, world_size=world_size)


def check_batch(batch, encoded, seq_len) -> list[int]:
    """Asserts everything a batch must be, from first principles; the pairs it holds."""
    seen = []
    shape = (len(batch.rows), seq_len)
    for name in ("input_ids", "labels", "segment_ids", "position_ids"):
        array = getattr(batch, name)
        assert array.shape == shape and array.dtype == np.int64, name
    for ids, labels, segs, pos in zip(
        batch.input_ids, batch.labels, batch.segment_ids, batch.position_ids, strict=True
    ):
        pad = segs == -1
        used = int((~pad).sum())
        assert not pad[:used].any(), "padding only at the end"
        assert (ids[pad] == PAD).all() and (pos[pad] == 0).all() and (labels[pad] == -100).all()
        starts = np.flatnonzero(np.diff(segs[:used], prepend=-1))
        assert segs[starts].tolist() == list(range(len(starts)))
        assert (pos[starts] == 0).all()
        for segment, start in enumerate(starts.tolist()):
            stop = starts[segment + 1] if segment + 1 < len(starts) else used
            pair = int(ids[start]) - 100
            seen.append(pair)
            prompt, completion = encoded[pair]
            tokens = np.concatenate([prompt, completion])
            assert (pos[start:stop] == np.arange(stop - start)).all()
            assert (ids[start:stop] == tokens[: stop - start]).all()
            kept = min(len(tokens), seq_len + 1)  # a longer pair is cut at the end
            for t in range(start, stop):
                after = t - start + 1  # the pair's position of the next token
                completion_next = len(prompt) <= after < kept
                assert labels[t] == (tokens[after] if completion_next else -100), (pair, t)
    return seen


def test_batches_labels_segments_positions():
    encoded = synthetic(60)
    data = loader(encoded, seq_len=16, batch_size=4, valid_fraction=0.1)
    valid = set(np.flatnonzero(valid_mask(encoded, 0, 0.1)).tolist())
    assert data.counts.valid_pairs == len(valid) >= 1
    several = False
    for epoch in range(3):
        seen = []
        for step in range(data.steps_in_epoch(epoch)):
            batch = data.batch(epoch, step)
            pairs = check_batch(batch, encoded, 16)
            several |= (batch.segment_ids.max(axis=1) >= 2).any()
            seen += pairs
        assert len(seen) == len(set(seen)), "no pair twice in an epoch"
        assert not set(seen) & valid
        assert len(seen) > 0.8 * data.counts.pairs
    assert several, "packing puts several pairs in a row"
    # Some label is the next completion token, across the whole row's last column too.
    batch = data.batch(0, 0)
    assert (batch.labels != -100).any()


def test_label_positions_by_hand():
    # The second pair has no prompt: only the segment keeps its first token from being the
    # target of the first pair's last one.
    encoded = [
        (np.array([100, 7, 8], np.int32), np.array([9, 10], np.int32)),
        (np.array([], np.int32), np.array([11, 12, 13], np.int32)),
    ]
    data = loader(encoded, seq_len=11, batch_size=1, valid_fraction=0)
    for epoch in range(4):
        batch = data.batch(epoch, 0)
        order = encoded if batch.input_ids[0, 0] == 100 else encoded[::-1]
        tokens = [np.concatenate(pair).tolist() for pair in order]
        a, b = len(tokens[0]), len(tokens[1])
        assert batch.input_ids[0].tolist() == tokens[0] + tokens[1] + [PAD] * (11 - a - b)
        assert batch.segment_ids[0].tolist() == [0] * a + [1] * b + [-1] * (11 - a - b)
        assert batch.position_ids[0].tolist() == [*range(a), *range(b)] + [0] * (11 - a - b)
        expected = [-100] * 11
        for start, (prompt, _), pair in zip((0, a), order, tokens, strict=True):
            for k in range(max(len(prompt), 1), len(pair)):
                expected[start + k - 1] = pair[k]
        assert batch.labels[0].tolist() == expected
        assert expected[a - 1] == -100


def test_truncation_is_counted_and_cut_at_the_end():
    long = (np.array([100, 1, 2], np.int32), np.arange(2000, 2030, dtype=np.int32))
    encoded = [long] + synthetic(12, longest=3)[1:]  # the others fit in a row of 9
    data = loader(encoded, seq_len=8, batch_size=1, valid_fraction=0)
    assert data.counts.truncated_pairs == 1
    assert data.counts.tokens == 9 + sum(len(p) + len(c) for p, c in encoded[1:])
    # With one row a step, no row is dropped: the long pair has a row of its own.
    rows = [data.batch(0, s) for s in range(data.steps_in_epoch(0))]
    (batch,) = [b for b in rows if b.input_ids[0, 0] == 100]
    assert batch.input_ids[0].tolist() == [100, 1, 2, *range(2000, 2005)]
    assert batch.segment_ids[0].tolist() == [0] * 8
    assert batch.labels[0].tolist() == [-100, -100, *range(2000, 2006)]
    for batch in rows:
        check_batch(batch, encoded, 8)


def test_counts():
    encoded = [(np.array([100, 1], np.int32), np.array([2, 3, 4], np.int32))] * 4 + [
        (np.array([], np.int32), np.array([5, 6], np.int32))
    ]
    data = loader(encoded, seq_len=4, batch_size=1, valid_fraction=0)
    counts = data.counts
    assert (counts.pairs, counts.train_pairs, counts.valid_pairs) == (5, 5, 0)
    assert counts.truncated_pairs == 0
    assert counts.tokens == 4 * 5 + 2
    # Three completion tokens follow each prompt; an empty prompt's first one has none before.
    assert counts.completion_tokens == 4 * 3 + 1


def test_same_global_batch_for_any_rank_split():
    encoded = synthetic(80)
    whole = loader(encoded, batch_size=8)
    halves = [loader(encoded, batch_size=4, rank=r, world_size=2) for r in range(2)]
    quarters = [loader(encoded, batch_size=2, rank=r, world_size=4) for r in range(4)]
    assert whole.steps_in_epoch(1) == halves[0].steps_in_epoch(1) == quarters[3].steps_in_epoch(1)
    for epoch, step in [(0, 0), (1, 1), (2, whole.steps_in_epoch(2) - 1)]:
        full = whole.batch(epoch, step)
        for parts in (halves, quarters):
            got = [p.batch(epoch, step) for p in parts]
            for name in ("input_ids", "labels", "segment_ids", "position_ids", "rows"):
                joined = np.concatenate([getattr(b, name) for b in got])
                assert (joined == getattr(full, name)).all(), name
    assert (whole.batch(0, 0).input_ids != whole.batch(1, 0).input_ids).any()


def test_iteration_and_state_dict_round_trip():
    encoded = synthetic(40)
    data = loader(encoded, batch_size=2)
    steps = data.steps_in_epoch(0)
    it = iter(data)
    for _ in range(steps + 1):
        next(it)
    assert (data.epoch, data.step) == (1, 1)
    state = pickle.loads(pickle.dumps(data.state_dict()))
    expected = [next(it) for _ in range(data.steps_in_epoch(1) + 2)]

    resumed = loader(encoded, batch_size=1, world_size=2)  # same global batch, rank 0
    other = loader(encoded, batch_size=1, rank=1, world_size=2)
    resumed.load_state_dict(state)
    other.load_state_dict(state)
    for want, a, b in zip(expected, iter(resumed), iter(other), strict=False):
        assert (np.concatenate([a.input_ids, b.input_ids]) == want.input_ids).all()
        assert (np.concatenate([a.labels, b.labels]) == want.labels).all()
    assert pickle.loads(pickle.dumps(data)).batch(3, 0).labels.tolist() == (
        data.batch(3, 0).labels.tolist()
    )


@pytest.mark.parametrize(
    "change, word",
    [
        (dict(seed=1), "seed"),
        (dict(seq_len=12), "seq_len"),
        (dict(batch_size=4), "global_batch_size"),
        (dict(valid_fraction=0.2), "valid_fraction"),
        (dict(pairs=31), "num_pairs"),
    ],
)
def test_state_dict_refuses_other_settings(change, word):
    state = loader(synthetic(40), batch_size=2).state_dict()
    count = change.pop("pairs", 40)
    settings = dict(batch_size=2) | change
    with pytest.raises(UserError, match=f"cannot resume.*{word}") as err:
        loader(synthetic(count), **settings).load_state_dict(state)
    assert "\n" not in str(err.value)


def test_state_dict_refuses_other_pairs_and_bad_states():
    data = loader(synthetic(40), batch_size=2)
    state = data.state_dict()
    with pytest.raises(UserError, match="pairs_sha256"):
        loader(synthetic(40, seed=2), batch_size=2).load_state_dict(state)
    with pytest.raises(UserError, match="version"):
        data.load_state_dict(state | {"version": 99})
    with pytest.raises(UserError, match="impossible position"):
        data.load_state_dict(state | {"step": data.steps_in_epoch(0)})
    with pytest.raises(IndexError):
        data.batch(0, data.steps_in_epoch(0))


def test_split_holds_out_pairs():
    encoded = synthetic(40)
    train = loader(encoded, batch_size=1, valid_fraction=0.25)
    valid = loader(encoded, batch_size=1, valid_fraction=0.25, split="valid")
    assert train.counts.pairs + valid.counts.pairs == 40
    assert train.counts.valid_pairs == valid.counts.pairs >= 1
    held = valid_mask(encoded, 0, 0.25)
    assert held.sum() == valid.counts.pairs
    assert not valid_mask(encoded[:9], 0, 0.5).any()
    assert (valid_mask(encoded, 0, 0) == 0).all()
    assert valid_mask(encoded, 0, 1e-9).sum() == 1  # at least one of 10 or more
    duplicates = [encoded[0]] * 12 + encoded[1:]
    assert len(set(valid_mask(duplicates, 3, 0.2)[:12].tolist())) == 1


def test_too_few_pairs():
    with pytest.raises(UserError, match="lower batch_size or seq_len, or add pairs") as err:
        loader(synthetic(5), seq_len=16, batch_size=8)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="the valid split has 0 pairs"):
        loader(synthetic(5), batch_size=1, split="valid")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(seq_len=0, batch_size=1), "seq_len"),
        (dict(seq_len=8, batch_size=True), "batch_size"),
        (dict(seq_len=8, batch_size=1, seed=2**32), "seed"),
        (dict(seq_len=8, batch_size=1, split="test"), "split"),
        (dict(seq_len=8, batch_size=1, valid_fraction=1.0), "valid_fraction"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(UserError, match=message):
        SftLoaderConfig(**kwargs)


def test_end_to_end_from_jsonl(tmp_path, tok):
    from codekiln.tokenizer.special import load_tokenizer

    hf_tokenizer(tok, STARCHAT, eos_token=EOS).save_pretrained(tmp_path / "tokenizer")
    lines = [
        json.dumps({"prompt": f"Write function {i}.", "completion": f"def f{i}():\n    pass\n"})
        for i in range(30)
    ]
    pairs = read_pairs(write_jsonl(tmp_path / "pairs.jsonl", lines))
    tokenizer = load_tokenizer(tmp_path / "tokenizer")
    chat = load_chat_format(tmp_path / "tokenizer")
    encoded = encode_pairs(pairs, tokenizer, chat)
    config = SftLoaderConfig(seq_len=64, batch_size=2, seed=5)
    data = SftLoader(encoded, chat.eos_id(tokenizer), config)
    assert data.counts.train_pairs + data.counts.valid_pairs == 30
    batch = next(iter(data))
    row = batch.input_ids[0]
    targets = batch.labels[0][batch.labels[0] != -100]
    text = tok.decode(targets.tolist(), skip_special_tokens=False)
    # Only assistant turns are learned, their end included: no user turn, no prompt header.
    assert "def f" in text and "<|end|>" in text and EOS in text
    assert "<|user|>" not in text and "Write function" not in text and "<|assistant|>" not in text
    assert tok.decode(row.tolist(), skip_special_tokens=False).startswith("<|user|>\nWrite")


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_the_validation_rows_are_the_same_at_any_world_size(world_size):
    """The fixed validation set (train/validation.py): the ranks' real rows, in rank order,
    are one process's rows; every rank runs the same number of forward passes, the padding
    ones with no label."""
    from codekiln.train.validation import rank_batches

    valid = loader(synthetic(60), seq_len=16, batch_size=1, valid_fraction=0.3, split="valid")
    order = np.arange(valid.num_rows(0))
    count = min(7, len(order))

    def batches(rank, size):
        return rank_batches(lambda rows: valid.rows(0, rows), order, 7, 2, rank, size)

    whole = np.concatenate([b.input_ids for b in batches(0, 1)])
    shares = [batches(rank, world_size) for rank in range(world_size)]
    assert len({len(share) for share in shares}) == 1
    real = [b for share in shares for b in share if (b.labels != -100).any()]
    padding = [b for share in shares for b in share if (b.labels == -100).all()]
    assert np.array_equal(np.concatenate([b.input_ids for b in real]), whole)
    assert sum(len(b.rows) for b in real) == count and all(len(b.rows) == 1 for b in padding)
