"""The refresher: the engine that keeps every Jira connection alive (`manage.py refresh_tokens` is its shell).

    main.py       the one entry point: the arguments checked, one run or the loop, alerts after each
    selection.py  which grants are due, most urgent first, streamed; spread between runners met
    run.py        one run (or one pass of the loop): its state, the stop flag, the thread pool, the counts
    refresh.py    one grant's refresh, as a thread of the pool or a worker process runs it
    processes.py  --processes N: worker processes (spawn) sharing the concurrency
    loop.py       --loop: a pass every interval with jitter until a signal
    heartbeat.py  the RefresherRun row of each run, and its pruning
    report.py     the words: each grant's line, the summary, JSON lines, exit codes

A run receives its side effects (main.Effects: the list of grants, alert delivery, the heartbeat, the pause
between passes) and writes through a report.Report, so that tests drive it without patching it.

Nothing of Django is imported here: a worker process imports refresher.processes before it sets Django up.
"""
