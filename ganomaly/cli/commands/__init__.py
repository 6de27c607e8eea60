"""One module per ``ganomaly`` subcommand: its settings class and its ``run``."""
