"""The train stage: a resumable loop, scale-out under torchrun, export to Hugging Face format."""
