"""The agent on the local server: the hosted ``POST /v1/agent/runs``, whole or streamed.

Modules:

* :mod:`.routes`: the handler, the JSON and server-sent-event answers, keep-alives.
* :mod:`.engine`: the deterministic agent: it plans tool calls from the prompt and words the
  answer from their real results.
* :mod:`.tools`: the tools, over the organisation's data (tables, SQL under the ``tools/query``
  boundary, files, job runs; a notification with a write key).
* :mod:`.store`: saved chats. :mod:`.wire`: the family's component schemas.
"""

from labric.server.agent.routes import register

__all__ = ["register"]
