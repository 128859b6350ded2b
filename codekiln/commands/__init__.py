"""The `codekiln` commands, one typed function each; `codekiln.cli` holds the table that names
them. Importing a module here imports no stage: each command loads its stage when it runs."""
