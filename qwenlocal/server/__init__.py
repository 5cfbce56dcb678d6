"""`qwenlocal serve`: an OpenAI- (chat completions, Responses) and Anthropic-compatible HTTP server
over one loaded model.

openai.py reads a request into our messages, tools and GenerateOptions; reply.py turns the
engine's events into OpenAI's chunks and completions; worker.py runs one generation at a time in
a thread; answer.py streams (or collects) one request's answer; anthropic.py reads Anthropic's
Messages requests into the same, and anthropic_answer.py answers them in Anthropic's blocks and
events (/v1/messages, /v1/messages/count_tokens); responses.py reads OpenAI's Responses requests
(input items, instructions) into the same, response_output.py makes their output items and
events, and response_routes.py answers /v1/responses and keeps responses for previous_response_id;
protocol.py answers failures in OpenAI's shape and checks the key and the body's size; access.py
filters every request (Origin, Host, Content-Type); residency.py unloads an idle model and loads
it again (--keep-alive); runstate.py keeps the file `qwenlocal ps` reads; app.py holds the
Starlette routes; main.py binds and runs uvicorn.
(engine/promptcache.py keeps a few conversations' states.)
Nothing here is imported by the CLI until `serve` runs.
"""
