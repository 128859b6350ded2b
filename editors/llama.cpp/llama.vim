" llama.vim (github.com/ggml-org/llama.vim) completing with a codekiln model through
" llama.cpp's server. The plugin posts to llama-server's /infill; the server lays out the
" fill-in-the-middle prompt with the FIM tokens the GGUF carries.
"
" Start the server first (the GGUF from `codekiln export MODEL --format gguf --quant q8_0`):
"
"   llama-server -m /ABSOLUTE/PATH/TO/runs/demo/model/model-q8_0.gguf --port 8012 --ctx-size 0
"
" then put this before llama.vim loads (vimrc, or init.vim). The numbers suit the demo
" model's 512 tokens of context: a few lines around the cursor, no chunks from other files.
" Versions of llama.vim before the instruct mode name the FIM URL 'endpoint'.
let g:llama_config = {
    \ 'endpoint_fim':    'http://127.0.0.1:8012/infill',
    \ 'n_prefix':        32,
    \ 'n_suffix':        8,
    \ 'n_predict':       48,
    \ 'ring_n_chunks':   0,
    \ 'auto_fim':        v:true,
    \ }
