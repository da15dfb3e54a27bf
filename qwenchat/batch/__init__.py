"""Batch runs: every prompt of a file x every variant x every seed, once each, into a resumable JSONL file,
and the diff of two such files. inputs (prompt files, placeholders), plan (the runs), records (the results
file), runner (the runs through headless ChatSessions), diff (two result files); the command line's side,
`qwenchat batch` and `qwenchat diff`, is cli/batch.py."""
