"""One module per group of commands; each exposes click commands registered in cli.main."""
