"""The model card (README.md) an export writes, and the license that travels with the model.

BigCode released its models under the BigCode OpenRAIL-M license: open use and sharing, with
use-based restrictions that every derivative must carry. A model trained from scratch says so
by default; a fine-tune inherits its base's license, and a RAIL base's restrictions stay even
when another license is asked for. Front matter is YAML the Hub reads; its strings are written
JSON-quoted, which YAML parses as double-quoted scalars.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codekiln.errors import UserError
from codekiln.model.config import ModelConfig, num_parameters

DEFAULT_LICENSE = "bigcode-openrail-m"
USE = """```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")
model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")
inputs = tokenizer("def fibonacci(n):", return_tensors="pt")
print(tokenizer.decode(model.generate(**inputs, max_new_tokens=64)[0]))
```"""


@dataclass(frozen=True)
class License:
    """A license as the Hub names it: `hub_id` is "other" for one the Hub does not list,
    and then `license_name` is its slug. `rail`: a Responsible AI License, whose use
    restrictions bind every derivative."""

    hub_id: str
    name: str
    link: str | None = None
    rail: bool = False
    restrictions: tuple[str, ...] = ()
    license_name: str | None = None


# A summary of Attachment A in our words; the license text is what binds.
BIGCODE_RESTRICTIONS = (
    "No use that breaks any applicable law or regulation.",
    "No use that exploits or harms minors, or tries to.",
    "No generating or spreading verifiably false information meant to harm others.",
    "No generating or spreading personal information that can be used to harm someone.",
    "No publishing generated content without clearly saying it is machine-generated.",
    "No defaming, disparaging or harassing others on purpose.",
    "No impersonating people to deceive.",
    "No fully automated decisions that harm a person's legal rights or bind them.",
    "No discriminating against or harming people for their social behaviour or traits.",
    "No exploiting the vulnerabilities of a group (age, social, physical or mental traits).",
    "No discrimination on legally protected characteristics.",
    "No medical advice or interpretation of medical results in place of a professional's.",
    "No use in justice, law enforcement, immigration or asylum decisions about people.",
    "No generating or spreading malware or other code meant to harm computer systems.",
)

LICENSES: dict[str, License] = {
    lic.hub_id: lic
    for lic in (
        License(
            "bigcode-openrail-m",
            "BigCode OpenRAIL-M v1",
            "https://huggingface.co/spaces/bigcode/bigcode-model-license-agreement",
            rail=True,
            restrictions=BIGCODE_RESTRICTIONS,
        ),
        License("apache-2.0", "Apache License 2.0", "https://www.apache.org/licenses/LICENSE-2.0"),
        License("mit", "MIT License", "https://opensource.org/license/mit"),
        License("bsd-3-clause", "BSD 3-Clause", "https://opensource.org/license/bsd-3-clause"),
        # The generic OpenRAIL id names a family, not one text: RAIL, restrictions unknown here.
        License("openrail", "OpenRAIL", "https://www.licenses.ai/", rail=True),
        License("other", "Other"),
    )
}


def license_for(value: str | License, name: str | None = None, link: str | None = None) -> License:
    """The License a Hub id names (any case); an id we do not know becomes "other" with
    `license_name` set. `name`/`link` describe an "other" license, as a Hub README does.

    >>> license_for("Apache-2.0").name
    'Apache License 2.0'
    >>> lic = license_for("My License 1.0")
    >>> lic.hub_id, lic.license_name, lic.rail
    ('other', 'my-license-1.0', False)
    >>> license_for("bigscience-openrail-m").rail
    True
    """
    if isinstance(value, License):
        return value
    key = str(value).strip().lower()
    if not key:
        raise UserError("license: give a Hub license id, e.g. bigcode-openrail-m or apache-2.0")
    if key == "other" and name:  # a Hub README's "other" license, named by license_name
        value, key = name, name.strip().lower()
    elif key == "other" and link:
        return License("other", "Other", link)
    if key in LICENSES:
        return LICENSES[key]
    slug = re.sub(r"[^a-z0-9.+-]+", "-", key).strip("-") or "custom"
    # RAIL licenses carry "rail" or "openrail" as a word of their id (bigscience-bloom-rail-1.0).
    rail = any(word in ("rail", "openrail", "openrail++") for word in slug.split("-"))
    return License("other", str(value).strip(), link, rail=rail, license_name=slug)


def read_base_license(folder: str | Path) -> License | None:
    """The license of a Hugging Face model folder: its README.md front matter (`license`, and
    `license_name`/`license_link` for "other"), else config.json's `license`, else None."""
    folder = Path(folder)
    readme = folder / "README.md"
    front = parse_front_matter(readme.read_text(encoding="utf-8")) if readme.is_file() else {}
    if front.get("license"):
        return license_for(front["license"], front.get("license_name"), front.get("license_link"))
    config = folder / "config.json"
    if config.is_file():
        try:
            value = json.loads(config.read_text(encoding="utf-8")).get("license")
        except (ValueError, AttributeError):
            value = None
        if isinstance(value, str) and value.strip():
            return license_for(value)
    return None


def parse_front_matter(text: str) -> dict[str, str]:
    r"""A README's top-level `key: value` front-matter lines, quotes removed; lists and nested
    keys are skipped, so no PyYAML is needed. {} without front matter.

    >>> parse_front_matter('---\nlicense: "mit"\ntags: [code]\nbase_model: a/b\n---\n# A')
    {'license': 'mit', 'base_model': 'a/b'}
    """
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    found: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() == "---":
            break
        match = re.match(r"([A-Za-z_][\w-]*)\s*:\s*(.*?)\s*$", line)
        if not match or not match[2] or match[2][0] in "[{|>#":
            continue
        value = match[2]
        if value[0] in "\"'" and value[-1] == value[0] and len(value) > 1:
            value = value[1:-1]
        else:
            value = value.split(" #")[0].strip()  # a trailing YAML comment
        found[match[1]] = value
    return found


def curate_summary(curated_dir: str | Path) -> dict[str, Any] | None:
    """What a card tells of the curated data, from the curate stage's report.json; None
    without one. The report counts licenses over the files in, before filtering."""
    report_file = Path(curated_dir) / "report.json"
    if not report_file.is_file():
        return None
    report = json.loads(report_file.read_text(encoding="utf-8"))
    totals = report.get("totals", {})

    def kept(buckets: dict[str, Any]) -> dict[str, int]:
        return {k: b["files_kept"] for k, b in buckets.items() if b.get("files_kept")}

    summary: dict[str, Any] = {
        "files kept": totals.get("files_kept"),
        "bytes kept": totals.get("bytes_kept"),
        "files kept per language": kept(report.get("languages", {})),
        "files kept per source": kept(report.get("sources", {})),
    }
    licenses = report.get("steps", {}).get("licenses")
    if licenses:
        summary["licenses of the files in"] = licenses
    return summary


def model_card(config: ModelConfig, kind: str, card: dict | None = None) -> str:
    """README.md: YAML front matter for the Hub, then the card's facts, one section a key.

    `card` may hold name, description, license (a Hub id), base_model and base_license (a
    fine-tune), datasets (Hub ids), and sections such as data, training, evaluation. Values
    may be text, a dict (a list of `key: value`) or a list (bullets).
    """
    card = dict(card or {})
    name = str(card.pop("name", "codekiln model"))
    description = card.pop("description", None)
    asked = card.pop("license", None)
    base_model = card.pop("base_model", None)
    base_license = card.pop("base_license", None)
    datasets = card.pop("datasets", None) or []
    base = license_for(base_license) if base_license else None
    if base_model is None:
        license = license_for(asked or DEFAULT_LICENSE)
    else:
        license = license_for(asked) if asked else base or LICENSES["other"]

    front = ["---", f"license: {json.dumps(license.hub_id)}"]
    if license.license_name:
        front.append(f"license_name: {json.dumps(license.license_name)}")
    if license.hub_id == "other" and license.link:
        front.append(f"license_link: {json.dumps(license.link)}")
    front += ["library_name: transformers", "pipeline_tag: text-generation"]
    front.append(f"tags: [code, codekiln, {kind}]")
    if base_model is not None and _is_hub_id(str(base_model)):
        front.append(f"base_model: {json.dumps(str(base_model))}")
    if datasets:
        front += ["datasets:", *[f"- {json.dumps(str(d))}" for d in datasets]]
    front.append("---")

    lines = [*front, "", f"# {name}", "", str(description or _DESCRIPTION), ""]
    if base_model is not None:
        lines += ["## Base model", "", _base_text(str(base_model), base), ""]
    heads = f"{config.n_head} ({config.n_kv_heads} key/value)"
    model = {
        "architecture": f"{kind} ({config.position} positions)",
        "parameters": f"{num_parameters(config):,}",
        "layers": config.n_layer,
        "hidden size": config.n_embd,
        "attention heads": heads,
        "context": f"{config.n_positions} tokens",
        "vocabulary": f"{config.vocab_size} tokens",
    }
    lines += ["## Model", "", _render(model), ""]
    lines += ["## Use", "", USE, ""]
    ordered = ("data", "training", "evaluation")
    for key in (*ordered, *[k for k in card if k not in ordered]):
        if key in card:
            lines += [f"## {key.replace('_', ' ').capitalize()}", "", _render(card[key]), ""]
    lines += ["## License", "", *_license_lines(license, base, base_model, asked)]
    return "\n".join(lines)


_DESCRIPTION = "A code language model trained with codekiln."
_NOT_STATED = "Not stated: the base model's license was not found. Read it, and state it here."


def _is_hub_id(name: str) -> bool:
    """A Hub repo id ("bigcode/starcoderbase-1b"), not a local folder: the Hub rejects a
    base_model that names no model on it, so a folder is named in the text only."""
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) or name.startswith("."):
        return False
    return not Path(name).is_dir()


def _base_text(base_model: str, base: License | None) -> str:
    shown = f"[{base_model}](https://huggingface.co/{base_model})"
    if not _is_hub_id(base_model):
        shown = f"`{base_model}`"
    licensed = f"released under {_named(base)}" if base else "whose license was not found"
    return f"Fine-tuned from {shown}, {licensed}."


def _named(lic: License) -> str:
    return f"[{lic.name}]({lic.link})" if lic.link else lic.name


def _license_lines(
    license: License, base: License | None, base_model: Any, asked: Any
) -> list[str]:
    if base_model is not None and base is None and not asked:
        lines = [_NOT_STATED, ""]
    elif license == LICENSES["other"]:
        lines = ["A license the Hub does not list: see this repository's files.", ""]
    else:
        lines = [f"This model is released under {_named(license)}.", ""]
    carried = list(dict.fromkeys(lic for lic in (base, license) if lic is not None and lic.rail))
    if not carried:
        return lines
    if base is not None and base.rail and base != license:
        lines += [
            f"This model derives from `{base_model}`, released under {_named(base)}. It is "
            f"shared under {license.name}, but the use restrictions of {base.name} still "
            "apply to it: a derivative of a RAIL-licensed model must carry them.",
            "",
        ]
    lines += ["### Use restrictions", "", "In short, for this model and every derivative of it:"]
    for lic in carried:
        lines += ["", f"Under {_named(lic)}:"] if len(carried) > 1 else []
        fallback = [f"- The uses that {_named(lic)} restricts (see its text)."]
        lines += ["", *([f"- {r}" for r in lic.restrictions] or fallback)]
    lines += [
        "",
        "Any derivative of this model (a fine-tune, a quantised or merged copy, or a model "
        "trained on its outputs to imitate it) must carry the same use restrictions, and "
        "whoever shares this model or a derivative must share its license with it. This "
        "summary is not the license: the license text governs.",
        "",
    ]
    return lines


def _render(value: Any, depth: int = 0) -> str:
    """Markdown for a card value: text as it is, a dict as `- **key**: value` bullets and a
    list as bullets; a dict of scalars inside a dict (counts per language, say) becomes
    indented bullets, anything deeper one line of JSON.

    >>> print(_render({"steps": 3, "languages": {"Python": 2, "Go": 1}}))
    - **steps**: 3
    - **languages**:
      - **Python**: 2
      - **Go**: 1
    """
    indent = "  " * depth
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            flat = isinstance(item, dict) and item and depth == 0
            flat = flat and not any(isinstance(v, dict | list | tuple) for v in item.values())
            if flat:
                lines.append(f"{indent}- **{key}**:\n{_render(item, depth + 1)}")
            else:
                lines.append(f"{indent}- **{key}**: {_inline(item)}")
        return "\n".join(lines)
    if isinstance(value, list | tuple):
        return "\n".join(f"{indent}- {_inline(v)}" for v in value)
    return str(value)


def _inline(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return "`" + json.dumps(value, default=str) + "`"
    return str(value)
