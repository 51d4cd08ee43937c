"""``llmroute local``: the DeepSeek outage on a laptop, with no cluster and no API keys.

Starts one provider emulator per provider of the example's ProviderPolicy on loopback (a provider that names a
ModelPool gets the pool instead: emulated vLLM pods started, drained and sized by the operator's own scaling
decision), runs the **real router process** on the example's own YAML (endpoints pointed at the emulators: the same
compile() and the same router code path as in the cluster), sends a mix of ``public``/``internal``/``pii``/``phi``
requests through the official ``openai`` SDK (a few ``public``/``internal`` prompts carrying generated personal data
the router must escalate to ``pii``), and replays DeepSeek's recorded incidents as a time-compressed drill.
It ends with a summary per drill phase (who served, the pools' replicas) and the residency proof, measured at the
providers and the pools' pods: requests of each class that reached a provider the class forbids (always 0).

* :mod:`~llmroute.local.drill` - the drill phases and their schedule (pure).
* :mod:`~llmroute.local.stack` - emulators, the rewritten config and the router process.
* :mod:`~llmroute.local.pools` - each ModelPool as vLLM pod emulators, its endpoints file and its scaler.
* :mod:`~llmroute.local.signals` - the scaler's other inputs: the watched providers' prober and router demand.
* :mod:`~llmroute.local.traffic` - the traffic generator (openai SDK) and what each request saw.
* :mod:`~llmroute.local.report` - per-phase summary and residency proof from the results (pure).
* :mod:`~llmroute.local.view` - the live terminal view and the printed summary (rich).
* :mod:`~llmroute.local.run` - orchestration, Ctrl-C handling, exit codes.
"""
