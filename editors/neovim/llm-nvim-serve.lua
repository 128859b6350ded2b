-- llm.nvim (huggingface/llm.nvim) through its own llm-ls, talking to `codekiln serve`:
--   codekiln serve runs/demo/model --port 8000
-- (llm.nvim has no attribution command; llm-vscode's is in editors/vscode.)
require("llm").setup({
  backend = "tgi",
  url = "http://127.0.0.1:8000/generate",
  model = "codekiln",
  api_token = nil, -- the --api-key given to codekiln serve, if any
  tokens_to_clear = { "<|endoftext|>" },
  request_body = { parameters = { max_new_tokens = 60, temperature = 0.2, top_p = 0.95 } },
  fim = { enabled = true, prefix = "<fim_prefix>", middle = "<fim_middle>", suffix = "<fim_suffix>" },
  -- llm-ls cuts prompts to context_window tokens and leaves no room for the answer: the
  -- model's context (runs/demo/model: the tiny preset's 512 tokens) minus max_new_tokens.
  -- `codekiln editor-settings MODEL --editor neovim` writes this file for another model.
  context_window = 452,
  tokenizer = { path = vim.fn.expand("~/runs/demo/model/tokenizer.json") },
  enable_suggestions_on_startup = true,
})
