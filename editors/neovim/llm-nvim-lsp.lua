-- llm.nvim (huggingface/llm.nvim) with codekiln's language server in place of llm-ls: no
-- llm-ls download and no HTTP server. codekiln answers llm-ls/getCompletions itself, lays
-- out fill-in-the-middle with the model's own tokens, and ignores backend/url/model.
require("llm").setup({
  backend = "tgi",
  url = "http://127.0.0.1:1", -- unused
  model = "codekiln",
  tokens_to_clear = { "<|endoftext|>" },
  request_body = { parameters = { max_new_tokens = 60, temperature = 0.2, top_p = 0.95 } },
  fim = { enabled = true, prefix = "<fim_prefix>", middle = "<fim_middle>", suffix = "<fim_suffix>" },
  -- llm-ls's prompt budget: the model's context (runs/demo/model: the tiny preset's 512
  -- tokens) minus max_new_tokens. `codekiln editor-settings MODEL --editor neovim
  -- --backend lsp` writes this file for another model.
  context_window = 452,
  lsp = {
    bin_path = vim.fn.expand("~/codekiln/editors/neovim/codekiln-lsp"),
    cmd_env = { CODEKILN_MODEL = vim.fn.expand("~/runs/demo/model") },
  },
  enable_suggestions_on_startup = true,
})
