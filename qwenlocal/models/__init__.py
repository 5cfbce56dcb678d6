"""The model spine: from a name to a model on disk, ready to load. Core only: nothing here asks or
prints (commands/loading.py does, in one straight line over `loader`).

catalog.py (with usercatalog.py, the user's own models.toml) names the models and resolves a name;
hardware.py detects the machine and picks the size, quantization and context that fit, with
memory.py's arithmetic; store.py is what is on disk (found, listed, removed, shown), with
ggufheader.py reading a GGUF's header; download.py fetches a file (resumable, verified); loader.py
plans (one Plan: the choice and each file, on disk or still to fetch) and loads; sizing.py fits
`run`'s context to its prompt.
"""
