"""Agent mode: the model reads, writes and edits files and runs commands, with approval,
confinement to a workspace, and undo. `loop.Agent` runs a task; `commands/agent.py` sets it up."""
