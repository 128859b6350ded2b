"""The names of the files in an evaluation folder's ``<task>/`` folders: the harness writes
them, the report and the leaderboard read them (see ``harness`` for what each holds)."""

GENERATIONS = "generations.jsonl"
VERDICTS = "verdicts.jsonl"
RESULTS = "results.json"
SETTINGS = "settings.json"
