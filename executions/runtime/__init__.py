"""Where executions run: supervisors and execution processes.

User code never runs on the web server's event loop or in its threads. Each
execution runs in an execution process of its own (`process`), started and
watched by a supervisor (`supervisor`): the ASGI server (`server`), an
engine's worker (`worker`), or `manage.py execute`, whose own process is the
execution process (`local`). The supervisor is the one writer of the row:
it claims it, heartbeats, writes progress, relays interrupts from the
channel layer and the database to the engine, escalates force to SIGTERM and
SIGKILL of the process group, and finishes the row once the process is gone.

- `dispatch`: hand a recorded execution to whoever runs it.
- `taskqueues`: the tasks Celery and Django Tasks run, each the supervisor
  of one execution in the worker's process.
- `interrupts`: record a request on the row, then push it (durable first).
- `reaper`: end rows whose supervisor is gone, so nothing stays stuck.
- `relay`: with a channel layer no other process shares, the server relays
  database changes of runs it does not supervise (a terminal's) to browsers.
- `broadcast`, `groups`: what goes to the channel layer, and its names.
"""
