import pytest

from codekiln.curate.config import CurateConfig
from codekiln.errors import UserError


def test_defaults_are_starcoders():
    c = CurateConfig()
    assert (c.max_line_length, c.max_avg_line_length, c.min_alphanum_fraction) == (1000, 100, 0.25)
    assert c.threshold("max_chars", "JSON") == 5000
    assert c.threshold("min_alpha_fraction", "YAML") == 0.5
    assert c.threshold("max_line_length", "TeX") is None
    assert c.threshold("max_line_length", "Python") == 1000


def test_toml_file_and_sets(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[curate]\nmax_line_length = 2000\n[curate.overrides.Go]\nmax_lines = 5\n")
    c = CurateConfig.load(path, ["languages=Python,Go", "min_alphanum_fraction=0.3"])
    assert c.max_line_length == 2000
    assert c.threshold("max_lines", "Go") == 5
    assert c.threshold("max_chars", "JSON") == 5000  # file overrides add to the defaults
    assert c.languages == ["Python", "Go"]
    assert c.min_alphanum_fraction == 0.3


@pytest.mark.parametrize(
    "sets, message",
    [
        (["nonsense=1"], "unknown curate setting"),
        (["max_file_bytes=0"], "must be positive"),
        (["overrides.Python.max_bogus=1"], "unknown threshold"),
        (["languages=Klingon"], "unknown language"),
        (["max_line_length"], "key=value"),
    ],
)
def test_bad_settings_raise_user_error(sets, message):
    with pytest.raises(UserError, match=message):
        CurateConfig.load(sets=sets)


def test_bad_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        CurateConfig.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("max_line_length = = 3")
    with pytest.raises(UserError, match="not valid TOML"):
        CurateConfig.load(bad)
