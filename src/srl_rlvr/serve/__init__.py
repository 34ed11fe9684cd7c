"""Serving: an OpenAI-compatible HTTP server over trained models, read in this order:

config.py      the `serve:` section of the YAML file
generation.py  a batch of requests into completions, through the rollout engine's one text API
sampling_params.py, row_sampling.py  per-row sampling (n, seed, top_p, log-probs, penalties)
structured.py  response_format as a grammar (constrained decoding, xgrammar)
tools.py       tool definitions into the prompt, tool calls out of the answer; tool_loop.py runs a
               role's MCP tools
models.py      base models loaded once, LoRA adapters attached and detached at runtime, batching
guardrails.py  input and output rules per role; audit.py writes every violation
auth.py        API keys and the per-key rate limit
health.py      live error rate and latency per model, periodic probes: healthy / degraded / failed
roles.py       each role's chain of models, canary traffic shift, rollback and promotion
openai_api.py  request and response shapes of the OpenAI API
body.py        request bodies decoded, or a one-line 400 (lone surrogates, deep nesting, huge integers)
server.py      one request's path: guardrails -> healthy model -> failover -> guardrails
app.py         the FastAPI routes; run.py starts uvicorn (in the foreground or a background thread)
mcp_server.py  `srl-rlvr mcp`: the system's operations as MCP tools, behind the same keys
header_timeout.py  uvicorn's h11 protocol closing connections slow to send their headers (slow-loris)
"""
