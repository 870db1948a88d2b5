"""Fuzz tests: the message contract, every MQTT handler, the image decoders and the HTTP API."""
