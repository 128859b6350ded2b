"""The model card: the license travels with the model, from scratch and through fine-tunes."""

from __future__ import annotations

import json

import pytest

from codekiln.errors import UserError
from codekiln.model.card import (
    BIGCODE_RESTRICTIONS,
    LICENSES,
    License,
    curate_summary,
    license_for,
    model_card,
    parse_front_matter,
    read_base_license,
)
from codekiln.model.config import ModelConfig

CONFIG = ModelConfig(vocab_size=512, n_positions=128, n_embd=64, n_layer=2, n_head=4)
BIGCODE_LINK = "https://huggingface.co/spaces/bigcode/bigcode-model-license-agreement"
STARCODER_README = """---
pipeline_tag: text-generation
inference: true
widget:
- text: 'def print_hello_world():'
  example_title: Hello world
license: bigcode-openrail-m
datasets:
- bigcode/the-stack-dedup
model-index:
- name: StarCoder
  results: []
---

# StarCoderBase-1B
"""


def card(**fields) -> str:
    return model_card(CONFIG, "gpt_bigcode", fields)


def front(text: str) -> dict[str, str]:
    assert text.startswith("---\n")
    return parse_front_matter(text)


def section(text: str, title: str) -> str:
    return text.split(f"\n{title}\n", 1)[1].split("\n## ", 1)[0]


def test_from_scratch_defaults_to_bigcode_openrail_m():
    text = card(name="kiln-tiny")
    meta = front(text)
    assert meta["license"] == "bigcode-openrail-m"
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-generation"
    assert "base_model" not in meta and "license_name" not in meta
    assert "tags: [code, codekiln, gpt_bigcode]" in text
    assert "## Base model" not in text
    license_text = section(text, "## License")
    assert f"[BigCode OpenRAIL-M v1]({BIGCODE_LINK})" in license_text
    assert "### Use restrictions" in license_text
    for restriction in BIGCODE_RESTRICTIONS:
        assert f"- {restriction}" in license_text
    assert "must carry the same use restrictions" in license_text
    assert "malware" in license_text and "medical" in license_text
    assert text.index("## Model") < text.index("## License")


def test_from_scratch_with_apache_has_no_rail_restrictions():
    text = card(license="Apache-2.0", data={"source": "stdlib"})
    assert text.startswith('---\nlicense: "apache-2.0"\n')  # what hf.py's test reads
    license_text = section(text, "## License")
    assert "Apache License 2.0" in license_text
    assert "Use restrictions" not in text and "OpenRAIL" not in text
    assert "## Data" in text and "- **source**: stdlib" in text


def test_fine_tune_inherits_openrail_from_base_readme(tmp_path):
    base = tmp_path / "starcoderbase-1b"
    base.mkdir()
    (base / "README.md").write_text(STARCODER_README)
    inherited = read_base_license(base)
    assert inherited == LICENSES["bigcode-openrail-m"] and inherited.rail
    text = card(name="kiln-ft", base_model=str(base), base_license=inherited)
    meta = front(text)
    assert meta["license"] == "bigcode-openrail-m"
    assert "base_model" not in meta  # a local folder is no Hub id: the Hub would reject it
    base_text = section(text, "## Base model")
    assert f"`{base}`" in base_text and "BigCode OpenRAIL-M v1" in base_text
    assert "### Use restrictions" in section(text, "## License")
    assert "still apply" not in text  # same license: nothing to explain


def test_fine_tune_of_openrail_asking_another_license_keeps_restrictions():
    text = card(
        base_model="bigcode/starcoderbase-1b", base_license="bigcode-openrail-m", license="mit"
    )
    assert front(text)["license"] == "mit"
    license_text = section(text, "## License")
    assert "released under [MIT License]" in license_text
    assert "use restrictions of BigCode OpenRAIL-M v1 still apply" in license_text
    assert "### Use restrictions" in license_text
    assert f"- {BIGCODE_RESTRICTIONS[0]}" in license_text


def test_fine_tune_names_hub_base_model():
    text = card(base_model="bigcode/tiny_starcoder_py", base_license="bigcode-openrail-m")
    assert front(text)["base_model"] == "bigcode/tiny_starcoder_py"
    assert (
        "Fine-tuned from [bigcode/tiny_starcoder_py](https://huggingface.co/bigcode/"
        "tiny_starcoder_py), released under [BigCode OpenRAIL-M v1]"
    ) in section(text, "## Base model")


def test_fine_tune_of_base_without_license_says_so(tmp_path):
    assert read_base_license(tmp_path) is None  # no README, no config.json
    (tmp_path / "config.json").write_text('{"model_type": "gpt_bigcode"}')
    assert read_base_license(tmp_path) is None
    text = card(base_model=str(tmp_path), base_license=None)
    assert front(text)["license"] == "other"
    assert "license was not found" in section(text, "## Base model")
    assert "Not stated" in section(text, "## License")


def test_base_license_from_config_json_and_other_front_matter(tmp_path):
    (tmp_path / "config.json").write_text('{"license": "Apache-2.0"}')
    assert read_base_license(tmp_path) == LICENSES["apache-2.0"]
    (tmp_path / "README.md").write_text(
        "---\nlicense: other\nlicense_name: 'acme-model-license'  \n"
        'license_link: "https://acme.example/license"\ntags: [code]\n---\n# acme\n'
    )
    acme = read_base_license(tmp_path)
    assert acme.hub_id == "other" and acme.license_name == "acme-model-license"
    assert acme.link == "https://acme.example/license" and not acme.rail


def test_unknown_license_is_other_with_license_name():
    lic = license_for("Acme Model License 2")
    assert lic == License("other", "Acme Model License 2", license_name="acme-model-license-2")
    meta = front(card(license="Acme Model License 2"))
    assert meta["license"] == "other" and meta["license_name"] == "acme-model-license-2"
    assert license_for("OTHER") == LICENSES["other"]
    assert license_for("bigscience-bloom-rail-1.0").rail
    with pytest.raises(UserError, match="Hub license id"):
        license_for("  ")


def test_curate_summary_reads_report_json(tmp_path):
    assert curate_summary(tmp_path) is None

    def bucket(files_in: int, kept: int) -> dict:
        return {"files_in": files_in, "bytes_in": 100 * files_in, "files_kept": kept,
                "bytes_kept": 100 * kept, "dropped": {}}  # fmt: skip

    report = {
        "format_version": 1,
        "totals": bucket(10, 6),
        "languages": {"Python": bucket(7, 5), "Go": bucket(2, 1), "(unknown)": bucket(1, 0)},
        "kinds": {"code": bucket(10, 6)},
        "sources": {"stdlib": bucket(10, 6)},
        "funnel": [{"step": "inputs", "files": 10}],
        "steps": {"licenses": {"mit": 6, "(none)": 4}},
    }
    (tmp_path / "report.json").write_text(json.dumps(report))
    summary = curate_summary(tmp_path)
    assert summary == {
        "files kept": 6,
        "bytes kept": 600,
        "files kept per language": {"Python": 5, "Go": 1},
        "files kept per source": {"stdlib": 6},
        "licenses of the files in": {"mit": 6, "(none)": 4},
    }
    text = card(data={"pack": "runs/pack", "curated": summary})
    assert '- **curated**: `{"files kept": 6' in section(text, "## Data")


def test_huggingface_hub_reads_the_front_matter(tmp_path):
    repocard = pytest.importorskip("huggingface_hub.repocard")
    from huggingface_hub import ModelCard

    text = card(
        base_model="bigcode/starcoderbase-1b",
        base_license="bigcode-openrail-m",
        datasets=["bigcode/the-stack-smol"],
    )
    (tmp_path / "README.md").write_text(text)
    meta = repocard.metadata_load(tmp_path / "README.md")
    assert meta["license"] == "bigcode-openrail-m"
    assert meta["base_model"] == "bigcode/starcoderbase-1b"
    assert meta["datasets"] == ["bigcode/the-stack-smol"]
    assert meta["tags"] == ["code", "codekiln", "gpt_bigcode"]
    data = ModelCard(card(license="Acme License")).data
    assert data.license == "other" and data.license_name == "acme-license"
