"""`qwenlocal serve`: an OpenAI-compatible HTTP server over one loaded model.

openai.py reads a request into our messages, tools and GenerateOptions; reply.py turns the
engine's events into OpenAI's chunks and completions; worker.py runs one generation at a time in
a thread; answer.py streams (or collects) one request's answer; protocol.py answers failures
in OpenAI's shape and checks the key and the body's size; access.py filters every request (Origin,
Host, Content-Type); app.py holds the Starlette routes; main.py binds and runs uvicorn.
(engine/promptcache.py keeps a few conversations' states.)
Nothing here is imported by the CLI until `serve` runs.
"""
