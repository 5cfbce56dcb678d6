"""The qwenlocal benchmark harness: `python -m bench` (see README.md, "Speed")."""
