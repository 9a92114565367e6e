"""Editor support for .nn files: a Pygments lexer, a TextMate grammar (``editors/``) and a language
server (``nndsl lsp``) that reports ``nndsl check``'s errors as you type and shows shapes on hover.

``words`` holds the vocabulary both highlighters share; it imports nothing heavy, so Pygments can load
the lexer without importing torch.
"""
