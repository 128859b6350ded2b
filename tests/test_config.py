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


def test_component_tables_from_file_and_sets(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        "[curate.minhash]\nthreshold = 0.85\n[curate.issues]\nmax_comments = 3\n"
        "bot_names = ['Helper']\n[curate.commits]\nenabled = true\n"
    )
    c = CurateConfig.load(path, ["minhash.seed=7", "tasks.files=8", "issues.min_chars=10"])
    assert (c.minhash.threshold, c.minhash.seed, c.minhash.ngram) == (0.85, 7, 5)
    assert c.minhash.band_rows() == (13, 19)
    assert (c.issues.max_comments, c.issues.min_chars, c.issues.bot_names) == (3, 10, ("helper",))
    assert c.commits.enabled and c.commits.max_file_bytes == 100_000
    assert c.tasks.files == 8 and c.tasks.rows == 4096
    assert c.to_dict()["minhash"]["threshold"] == 0.85
    assert CurateConfig.load(sets=["commits.enabled=true"]).commits.enabled


@pytest.mark.parametrize(
    "text, sets, message",
    [
        ("[curate.minhash]\nbogus = 1\n", [], r"unknown setting 'curate\.minhash\.bogus'"),
        ("[curate]\nminhash = 5\n", [], r"'curate\.minhash' is a table"),
        ("", ["minhash.bogus=1"], r"unknown setting 'curate\.minhash\.bogus'"),
        ("", ["minhash=0.8"], "is a table of settings"),
        ("", ["minhash.threshold=1.5"], "threshold must be between 0 and 1"),
        ("", ["issues.keep_tail_lines=99"], "keep_tail_lines"),
        ("", ["commits.max_commits=0"], "max_commits"),
        ("", ["tasks.files=0"], "tasks.files must be positive"),
    ],
)
def test_bad_component_settings_raise_user_error(tmp_path, text, sets, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        CurateConfig.load(path, sets)


def test_a_setting_of_the_wrong_type_is_one_clear_error(tmp_path):
    from codekiln.config import load_config
    from codekiln.serve.config import ServeConfig

    path = tmp_path / "c.toml"
    path.write_text('[serve]\nport = "x"\n')
    with pytest.raises(UserError, match="setting 'port' must be an integer, got 'x'"):
        load_config(ServeConfig, "serve", path)
    # A float setting takes an integer; an optional one takes none.
    from codekiln.train.config import TrainConfig

    config = load_config(TrainConfig, "train", sets=["lr=1", "max_minutes=none"])
    assert config.lr == 1 and config.max_minutes is None
