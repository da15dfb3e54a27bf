"""The command line: parser, startup and subcommands. argparse lives only here."""
