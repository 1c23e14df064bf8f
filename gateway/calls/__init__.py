"""Call control on the asyncio side: routing, the call state machine, call records.

`registry`, `routing`, `dialplan`, `numbers` and `callerid` are the pure core
(no clock, no engine, no I/O); `control` is the thin adapter that feeds
engine events in, sends the core's commands to the engine and re-arms the
one timer the core asks for.
"""
