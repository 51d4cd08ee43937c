"""``llmroute local``: the DeepSeek outage on a laptop, with no cluster and no API keys.

Starts one provider emulator per provider of the example's ProviderPolicy on loopback, runs the **real router
process** on the example's own YAML (endpoints pointed at the emulators: the same compile() and the same router code
path as in the cluster), sends a mix of ``public``/``internal``/``pii``/``phi`` requests through the official
``openai`` SDK, and replays DeepSeek's recorded incidents as a time-compressed drill. It ends with a summary per
drill phase and the residency proof, measured at the providers: requests of each class that reached a provider the
class forbids (always 0).

* :mod:`~llmroute.local.drill` - the drill phases and their schedule (pure).
* :mod:`~llmroute.local.stack` - emulators, the rewritten config and the router process.
* :mod:`~llmroute.local.traffic` - the traffic generator (openai SDK) and what each request saw.
* :mod:`~llmroute.local.report` - per-phase summary and residency proof from the results (pure).
* :mod:`~llmroute.local.view` - the live terminal view and the printed summary (rich).
* :mod:`~llmroute.local.run` - orchestration, Ctrl-C handling, exit codes.
"""
