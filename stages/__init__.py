"""Thin Click commands, one per DVC stage: parse options -> call nlsr_core -> write declared outs."""
