"""The tokenizer stage: a byte-level BPE with StarCoder's special tokens."""
