"""``hermes serve``: one process that owns the model pool for the whole machine.

It holds the pool (every ``[models.*]``, the ``[[pool.devices]]`` budgets, the one admission
queue, saved KV states), the sentinel's judge worker and the store writer, and serves an
OpenAI-compatible API to hermes's own commands and to any other client.

Modules: ``listener`` (where it listens: the Unix socket, optional TCP, the one-server lock),
``auth`` (the bearer token and client names), ``openai_schema`` (request checking, response and
error shapes), ``service`` (targets, prompt rendering, the completion pipeline and its store
records: the seams for tool calls, the sentinel on API streams and prompt-prefix caching),
``app`` (the Starlette routes), ``run`` (start-up, logging, shutdown) and ``client`` (how
hermes's commands find and use a running server).
"""
