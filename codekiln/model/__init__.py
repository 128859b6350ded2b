"""The model: a GPT-BigCode-style decoder in pure, single-device PyTorch."""
