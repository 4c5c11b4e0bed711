"""Simulators: the device fleet (degradation, failures, MQTT) and the technicians."""
