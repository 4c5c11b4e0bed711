"""Local service processes (PostgreSQL, Mosquitto) managed for tests, benches and the demo."""
