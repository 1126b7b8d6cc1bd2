"""The benchmark harness behind `make bench`: raw baselines of the stack and the platform, in one run.

`python -m bench` measures the baselines of ../shared/STACK.md (psycopg2, kombu, nameko RPC,
eventsourcing) and then the platform started as `make run` starts it (its own database and RabbitMQ
vhost), prints a table of each platform figure against its baseline and the issue's targets, and writes
the results as JSON under bench/results/.
"""
