"""The commands, one module each: `cli.py` assembles them into the Typer app.

A command reads its options, builds settings, calls the core and talks to the user through the
`Terminal` it is given (`options.terminal(ctx)`); the core neither prints nor asks.
"""
