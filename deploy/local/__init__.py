"""Private Postgres, Redis and RabbitMQ on free loopback ports, for tests and the local stack."""
