"""Hugging Face LLaMA checkpoints in and out of `lm` workdirs.

`from_hf.convert_from_hf` turns a transformers `LlamaForCausalLM` directory
(config.json, safetensors, tokenizer.model) into a workdir that `lm train`
continues and `lm sample` / `lm eval` use; `to_hf.convert_to_hf` writes a
workdir's newest checkpoint back out in that format. `hf_config` maps the
config, `layout` the tensors, `safetensors_io` reads and writes them lazily,
`workdir` reads and writes runs; the command line is `lm convert` (`cli`).
"""
