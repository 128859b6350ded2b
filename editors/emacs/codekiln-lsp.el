;;; codekiln-lsp.el --- completions from `codekiln lsp' through lsp-mode -*- lexical-binding: t -*-

;; Load after lsp-mode, e.g. in init.el:
;;   (setq codekiln-lsp-command '("codekiln" "lsp" "--model" "/path/to/runs/demo/model"))
;;   (load "/path/to/codekiln/editors/emacs/codekiln-lsp.el")
;;   (add-hook 'python-mode-hook #'lsp)
;; codekiln runs as an add-on server next to the language's own (pyright, clangd...):
;; its items appear in company / completion-at-point with the detail "codekiln".

;;; Code:

(require 'lsp-mode)

(defgroup codekiln-lsp nil
  "Code completions from a codekiln model."
  :group 'lsp-mode)

(defcustom codekiln-lsp-command '("codekiln" "lsp" "--model" "runs/demo/model")
  "Command that starts the codekiln language server (stdio)."
  :type '(repeat string)
  :group 'codekiln-lsp)

(defcustom codekiln-lsp-modes '(python-mode python-ts-mode c-mode c++-mode go-mode
                                rust-mode js-mode typescript-mode sh-mode)
  "Major modes in which codekiln completes code."
  :type '(repeat symbol)
  :group 'codekiln-lsp)

(lsp-register-client
 (make-lsp-client
  :new-connection (lsp-stdio-connection (lambda () codekiln-lsp-command))
  :activation-fn (lambda (_file mode) (memq mode codekiln-lsp-modes))
  :add-on? t
  :priority -2
  :server-id 'codekiln))

(provide 'codekiln-lsp)
;;; codekiln-lsp.el ends here
