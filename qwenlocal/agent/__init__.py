"""Agent mode: the model reads, writes and edits files and runs commands, with approval,
confinement to a workspace, and undo. `loop.run_agent` is the entry point."""
