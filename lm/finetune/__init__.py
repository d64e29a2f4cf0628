"""Instruction tuning: chat template, SFT data and packing, the fine-tune run, a synthetic benchmark."""
