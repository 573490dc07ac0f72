"""Private Postgres, Redis and RabbitMQ processes on free loopback ports, for tests and the local stack."""
