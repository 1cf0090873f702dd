"""One module per command; each is thin: options -> config -> one phase function -> render."""
