"""Run the back office for real where tests, the soak and the benchmarks can hurt it.

Private PostgreSQL and Redis servers with the Procfile's processes (``lab.servers``), a real
Celery worker process (``lab.worker``) and a worker app that injects faults (``lab.chaos``).
None of it is part of the deployed application.
"""
