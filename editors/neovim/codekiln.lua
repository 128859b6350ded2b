-- codekiln.lua: completions from `codekiln lsp` in Neovim, with no plugin.
--
--   local codekiln = dofile("/path/to/codekiln/editors/neovim/codekiln.lua")
--   codekiln.setup({ cmd = { "codekiln", "lsp", "--model", "/path/to/runs/demo/model" } })
--
-- Every buffer of `filetypes` attaches to one server. Completions then come:
--   - as ghost text on Neovim 0.12+ (textDocument/inlineCompletion): <M-l> accepts;
--   - from the completion menu on any Neovim 0.7+: <C-x><C-o> (omnifunc).
local M = {}

M.defaults = {
  cmd = { "codekiln", "lsp", "--model", vim.env.CODEKILN_MODEL or "runs/demo/model" },
  filetypes = { "python", "c", "cpp", "go", "java", "javascript", "typescript", "rust", "lua", "sh" },
  accept_key = "<M-l>",
}

local function attach(bufnr, opts)
  local config = { name = "codekiln", cmd = opts.cmd, root_dir = vim.fn.getcwd() }
  if vim.lsp.start then -- Neovim 0.8+
    return vim.lsp.start(config, { bufnr = bufnr })
  end
  M.client_id = M.client_id or vim.lsp.start_client(config)
  vim.lsp.buf_attach_client(bufnr, M.client_id)
  return M.client_id
end

function M.setup(opts)
  opts = vim.tbl_deep_extend("force", M.defaults, opts or {})
  vim.api.nvim_create_autocmd("FileType", {
    pattern = opts.filetypes,
    callback = function(args)
      M.client_id = attach(args.buf, opts)
      vim.bo[args.buf].omnifunc = "v:lua.vim.lsp.omnifunc"
      if vim.lsp.inline_completion then -- Neovim 0.12+
        vim.lsp.inline_completion.enable(true, { bufnr = args.buf })
        vim.keymap.set("i", opts.accept_key, function()
          vim.lsp.inline_completion.get()
        end, { buffer = args.buf, desc = "accept codekiln's completion" })
      end
    end,
  })
end

return M
