"""Jobs on the local server: scripts, triggers, and the runner that executes them.

* :mod:`.store`: the SQL for jobs, script versions, triggers and executions.
* :mod:`.firing`: the trigger rules applied inside a transaction (``fire_*``), and ending a
  platform execution.
* :mod:`.triggers`: what trigger conditions mean (the hosted glob and extension rules), their
  validation, and the rule that stops trigger loops.
* :mod:`.cron`: five-field cron expressions in IANA timezones.
* :mod:`.params`: parameter definitions and the parameters a run gets.
* :mod:`.runner`: :class:`~.runner.JobRunner`, which runs platform executions as subprocesses,
  fires schedules and wakes clients waiting for an execution to end.
* :mod:`.routes`: the jobs routes; :mod:`.executions`: the job-executions routes;
  :mod:`.wire`, :mod:`.executions_wire`: their families' component schemas.

This package's ``__init__`` imports nothing, so the modules can import each other freely.
"""
