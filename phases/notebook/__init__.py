"""`nlab runs`: the run folders read as a lab notebook. It only reads them (`gc --yes` excepted, which deletes
failed and stopped runs): `index` finds and summarises run folders, `query` parses the filters, and one module
per subcommand (`listing`, `inspect`, `compare`, `gc`) exposes a plain function of its config."""
